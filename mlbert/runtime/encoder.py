"""Tokenization with the ``tokenizers`` library from the tokenizer JSON in the model header.

Why not transformers: the runtime must install and start without torch or transformers,
and the fast tokenizer's JSON (stored inside the ONNX file) is all a BERT tokenizer
needs. A whole chunk is encoded in one ``encode_batch`` call, which runs in Rust on all
allowed cores, and the ids land in one padded numpy matrix; batches are then cut from
it with numpy indexing, so no Python loop runs per token.

A model trained with the label names in its input (``mlb-train --label-input``) has a
``label_segment`` in its header: each text is then encoded as the pair (label segment,
text), only the text truncated, with the token types of the tokenizer's pair template,
exactly as mlb-train encoded its training rows (``trainer/label_input.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np
from tokenizers import Tokenizer

from mlbert.errors import ModelFileError
from mlbert.modelfile import ModelHeader

_PAD_CANDIDATES = ("[PAD]", "<pad>", "<|pad|>", "[pad]")


@dataclass
class EncodedChunk:
    """Token ids of a chunk of texts, padded to the longest text of the chunk."""

    input_ids: np.ndarray  # (n, width) int64
    attention_mask: np.ndarray  # (n, width) int64, 1 for real tokens
    lengths: np.ndarray  # (n,) int64, real tokens per row (special tokens included)
    pad_id: int = 0
    # (n, width) int64 token types of pair inputs (label segment, text); None: all 0 (single texts).
    token_type_ids: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, index: np.ndarray, padded_length: int) -> "EncodedChunk":
        """Rows ``index``, cut or padded to ``padded_length`` columns."""
        def cut(matrix: Optional[np.ndarray], pad_value: int) -> Optional[np.ndarray]:
            if matrix is None:
                return None
            width = matrix.shape[1]
            if padded_length <= width:
                return np.ascontiguousarray(matrix[index, :padded_length])
            return np.pad(matrix[index], ((0, 0), (0, padded_length - width)), constant_values=pad_value)

        return EncodedChunk(cut(self.input_ids, self.pad_id), cut(self.attention_mask, 0), self.lengths[index],
                            self.pad_id, cut(self.token_type_ids, 0))


class Encoder:
    """Turns texts into padded id matrices exactly as the model was trained to read them."""

    def __init__(self, header: ModelHeader):
        try:
            tokenizer = Tokenizer.from_str(header.tokenizer_json)
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ModelFileError(f"model header: the tokenizer cannot be loaded ({exc})") from None
        self.max_length = int(header.max_length)
        self.pad_id = self._find_pad_id(tokenizer)
        pad_token = tokenizer.id_to_token(self.pad_id) or "[PAD]"
        self.label_segment = header.label_segment
        if self.label_segment is not None:
            self._check_label_segment(tokenizer, self.label_segment, self.max_length)
            tokenizer.enable_truncation(max_length=self.max_length, strategy="only_second")
        else:
            tokenizer.enable_truncation(max_length=self.max_length)
        # Pad to the longest text of each encode_batch call: one rectangular matrix.
        tokenizer.enable_padding(pad_id=self.pad_id, pad_token=pad_token)
        self.tokenizer = tokenizer
        self._fast = hasattr(tokenizer, "encode_batch_fast")  # tokenizers >= 0.20: no offsets

    @staticmethod
    def _find_pad_id(tokenizer: Tokenizer) -> int:
        padding = tokenizer.padding
        if padding and padding.get("pad_id") is not None:
            return int(padding["pad_id"])
        for token in _PAD_CANDIDATES:
            token_id = tokenizer.token_to_id(token)
            if token_id is not None:
                return int(token_id)
        return 0

    @staticmethod
    def _check_label_segment(tokenizer: Tokenizer, segment: str, max_length: int) -> None:
        """The label segment must leave room for text: only the text is ever truncated."""
        length = len(tokenizer.encode(segment, "").ids)
        if length >= max_length:
            raise ModelFileError(
                f"model header: the label segment takes {length} tokens, no room for text within max_length {max_length}"
            )

    def encode(self, texts: Sequence[str]) -> EncodedChunk:
        """Encode all ``texts`` in one call (truncated to the model's maximum length)."""
        if not texts:
            empty = np.zeros((0, 0), dtype=np.int64)
            return EncodedChunk(empty, empty.copy(), np.zeros((0,), dtype=np.int64))
        inputs: List[Any] = list(texts)
        if self.label_segment is not None:
            inputs = [(self.label_segment, text) for text in inputs]
        if self._fast:
            encodings = self.tokenizer.encode_batch_fast(inputs)
        else:  # pragma: no cover - older tokenizers
            encodings = self.tokenizer.encode_batch(inputs)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64) if self.label_segment is not None else None
        return EncodedChunk(ids, mask, mask.sum(axis=1), self.pad_id, types)

    def token_lengths(self, texts: List[str]) -> np.ndarray:
        """Real token counts (special tokens included), for callers that only need lengths."""
        return self.encode(texts).lengths
