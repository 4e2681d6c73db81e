"""Token-budget batches from token lengths.

Why: a BERT encoder's cost grows with ``rows x padded length``. Padding every text to
the model's maximum (the recipe's ``padding="max_length"``) spends most of the compute on
``[PAD]`` tokens, and fixed-size batches make memory depend on how long the texts are.
So rows are sorted by length, padded only to the next *bucket* length (a multiple of
``multiple``, capped at the model's maximum), and cut into batches whose padded size
``rows x length`` stays under a token budget (the idea of text-embeddings-inference's
``max_batch_tokens``). A small set of padded lengths also keeps onnxruntime's
per-shape work (memory arena growth, kernel choice) to a few shapes.

Pure numpy, no onnxruntime: testable in milliseconds.
"""

from __future__ import annotations

from typing import List

import numpy as np

from mlbert.errors import UsageError

# Padded lengths are multiples of this. Short texts (GoEmotions averages 19 tokens) make
# padding costly in relative terms: replaying the bucketing on GoEmotions gave 16% padded
# tokens with 8, 5% with 2 and 3% with 1, for about the same number of batches (47, 41, 40
# per 4,096 rows). 2 keeps the set of shapes small (64 for 128 tokens) under 10% padding.
DEFAULT_MULTIPLE = 2
# Budget in padded tokens per batch. On a CPU the time per token is flat from about a
# thousand tokens on, while onnxruntime's memory grows with the batch: with the int8
# MiniLM, 2048 tokens peaked at ~210 MiB resident and 8192 at ~530 MiB for no gain
# (2 cores, AVX-512). GPUs want far larger batches; --token-budget / MLB_TOKEN_BUDGET.
DEFAULT_TOKEN_BUDGET_CPU = 2048
DEFAULT_TOKEN_BUDGET_CUDA = 65536
# Very short texts would otherwise make batches of thousands of rows.
DEFAULT_MAX_BATCH_ROWS = 512


def bucket_lengths(lengths: np.ndarray, max_length: int, multiple: int = DEFAULT_MULTIPLE) -> np.ndarray:
    """Padded length for each row: ``lengths`` rounded up to ``multiple``, at most ``max_length``."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if multiple < 1:
        raise UsageError("bucket multiple must be at least 1")
    padded = -(-np.maximum(lengths, 1) // multiple) * multiple
    return np.minimum(padded, max(int(max_length), 1))


def make_batches(
    lengths: np.ndarray,
    token_budget: int,
    max_length: int,
    multiple: int = DEFAULT_MULTIPLE,
    max_rows: int = DEFAULT_MAX_BATCH_ROWS,
) -> List[np.ndarray]:
    """Split row indices into batches whose ``rows x padded length`` fits ``token_budget``.

    Rows are taken shortest first. Each batch is padded to the bucket length of its
    longest row; every row index appears in exactly one batch. A row longer than the
    budget on its own still gets a batch of one (the budget is a target, not a reason
    to drop a row). The loop runs once per batch, not once per row.

    Returns a list of int64 index arrays into ``lengths``.
    """
    if token_budget < 1:
        raise UsageError(f"token budget must be a positive number of tokens, not {token_budget}")
    if max_rows < 1:
        raise UsageError(f"max rows per batch must be positive, not {max_rows}")
    lengths = np.asarray(lengths, dtype=np.int64)
    n = len(lengths)
    if n == 0:
        return []
    order = np.argsort(lengths, kind="stable")
    padded = bucket_lengths(lengths[order], max_length, multiple)  # non-decreasing
    batches: List[np.ndarray] = []
    start = 0
    while start < n:
        # The batch [start, start + k) is padded to padded[start + k - 1]. Because
        # padded is non-decreasing, k * padded[start + k - 1] grows with k, so the rows
        # that fit form a prefix of the window: count them with one numpy comparison.
        window = min(n - start, max_rows, max(1, token_budget // int(padded[start])))
        ks = np.arange(1, window + 1)
        fits = int(np.count_nonzero(ks * padded[start:start + window] <= token_budget))
        end = start + max(1, fits)
        batches.append(order[start:end])
        start = end
    return batches


def batch_padding_waste(lengths: np.ndarray, batches: List[np.ndarray], max_length: int, multiple: int = DEFAULT_MULTIPLE) -> float:
    """Fraction of padded positions that are padding (for benchmarks and tests)."""
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    total = 0
    for idx in batches:
        total += len(idx) * int(bucket_lengths(lengths[idx].max(keepdims=True), max_length, multiple)[0])
    real = int(lengths.sum())
    return 0.0 if total == 0 else 1.0 - real / total
