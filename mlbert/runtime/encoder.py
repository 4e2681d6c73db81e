"""Tokenization with the ``tokenizers`` library from the tokenizer JSON in the model header.

Why not transformers: the runtime must install and start without torch or transformers,
and the fast tokenizer's JSON (stored inside the ONNX file) is all a BERT tokenizer
needs. A whole chunk is encoded in one ``encode_batch`` call, which runs in Rust on all
allowed cores, and the ids land in one padded numpy matrix; batches are then cut from
it with numpy indexing, so no Python loop runs per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence

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

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def batch(self, index: np.ndarray, padded_length: int) -> "EncodedChunk":
        """Rows ``index``, cut or padded to ``padded_length`` columns."""
        width = self.input_ids.shape[1]
        if padded_length <= width:
            ids = self.input_ids[index, :padded_length]
            mask = self.attention_mask[index, :padded_length]
        else:
            extra = padded_length - width
            ids = np.pad(self.input_ids[index], ((0, 0), (0, extra)), constant_values=self.pad_id)
            mask = np.pad(self.attention_mask[index], ((0, 0), (0, extra)), constant_values=0)
        return EncodedChunk(np.ascontiguousarray(ids), np.ascontiguousarray(mask), self.lengths[index], self.pad_id)


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

    def encode(self, texts: Sequence[str]) -> EncodedChunk:
        """Encode all ``texts`` in one call (truncated to the model's maximum length)."""
        if not texts:
            empty = np.zeros((0, 0), dtype=np.int64)
            return EncodedChunk(empty, empty.copy(), np.zeros((0,), dtype=np.int64))
        texts = list(texts)
        if self._fast:
            encodings = self.tokenizer.encode_batch_fast(texts)
        else:  # pragma: no cover - older tokenizers
            encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        return EncodedChunk(ids, mask, mask.sum(axis=1), self.pad_id)

    def token_lengths(self, texts: List[str]) -> np.ndarray:
        """Real token counts (special tokens included), for callers that only need lengths."""
        return self.encode(texts).lengths
