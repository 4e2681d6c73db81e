"""Token-budget batching: every row exactly once, budgets kept, few padded lengths."""

import numpy as np
import pytest

from mlbert.runtime.bucketing import DEFAULT_MULTIPLE, batch_padding_waste, bucket_lengths, make_batches
from mlbert.errors import UsageError


def test_bucket_lengths_round_up_to_multiple_and_cap():
    lengths = np.array([1, 2, 8, 9, 16, 17, 60, 64, 200])
    assert bucket_lengths(lengths, max_length=64, multiple=8).tolist() == [8, 8, 8, 16, 16, 24, 64, 64, 64]
    assert bucket_lengths(np.array([0]), max_length=64).tolist() == [DEFAULT_MULTIPLE]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("budget", [64, 512, 4096])
def test_batches_cover_every_row_once_and_respect_budget(seed, budget):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 65, size=1000)
    batches = make_batches(lengths, token_budget=budget, max_length=64, multiple=8, max_rows=10_000)
    together = np.concatenate(batches)
    assert sorted(together.tolist()) == list(range(1000))
    for index in batches:
        padded = int(bucket_lengths(lengths[index].max(keepdims=True), 64)[0])
        assert len(index) * padded <= budget or len(index) == 1


def test_batches_are_full_not_fragmented():
    # 1000 rows of 10 tokens (padded 16) with a 1600-token budget: exactly 100 rows a batch.
    lengths = np.full(1000, 10)
    batches = make_batches(lengths, token_budget=1600, max_length=64, multiple=8, max_rows=10_000)
    assert [len(b) for b in batches] == [100] * 10


def test_rows_are_taken_shortest_first_so_padding_is_small():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 129, size=4096)
    batches = make_batches(lengths, token_budget=8192, max_length=128)
    longest = [int(lengths[b].max()) for b in batches]
    assert longest == sorted(longest)
    assert batch_padding_waste(lengths, batches, max_length=128) < 0.05
    # Against padding everything to 128 (the recipe), most of that compute is padding.
    assert 1 - lengths.sum() / (len(lengths) * 128) > 0.4
    assert len({int(bucket_lengths(lengths[b].max(keepdims=True), 128)[0]) for b in batches}) <= 128 // DEFAULT_MULTIPLE


def test_short_texts_stay_under_ten_percent_padding():
    """GoEmotions-like lengths (mean ~19 tokens): the default multiple keeps padding low."""
    rng = np.random.default_rng(1)
    lengths = np.clip(rng.gamma(4.0, 4.8, size=4096).astype(int) + 3, 3, 128)
    batches = make_batches(lengths, token_budget=2048, max_length=128)
    assert batch_padding_waste(lengths, batches, max_length=128) < 0.10
    coarse = make_batches(lengths, token_budget=2048, max_length=128, multiple=8)
    assert batch_padding_waste(lengths, coarse, max_length=128, multiple=8) > 0.10


def test_max_rows_caps_batches_of_short_texts():
    batches = make_batches(np.full(1000, 3), token_budget=100_000, max_length=64, max_rows=128)
    assert max(len(b) for b in batches) == 128
    assert sum(len(b) for b in batches) == 1000


def test_a_row_longer_than_the_budget_gets_a_batch_of_its_own():
    batches = make_batches(np.array([5, 500, 6]), token_budget=64, max_length=512)
    assert sorted(len(b) for b in batches) == [1, 2]
    assert [1] in [b.tolist() for b in batches]


def test_empty_and_bad_budget():
    assert make_batches(np.array([], dtype=np.int64), 100, 64) == []
    with pytest.raises(UsageError):
        make_batches(np.array([3]), 0, 64)
