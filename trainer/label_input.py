"""Label names in the input (``--label-input``, SpanEmo's idea): the segment, and where each label's tokens sit.

Every row is encoded as the pair (label segment, text): ``[CLS] anger anticipation ...
[SEP] the text [SEP]`` for BERT, token type 0 for the labels and 1 for the text; only the
text is truncated (``only_second``). The label segment comes first so that each label's
tokens sit at the same positions in every row, whatever the text: the head reads them
with a constant matrix (``encoder_classifier.label_weights``), and nothing but the pair
encoding has to happen at inference. The runtime repeats it from the model file's
``label_segment`` (``mlbert/runtime/encoder.py``) with the same tokenizer JSON, so
training and ``mlb-batch`` see the same ids.

SpanEmo puts the label names first too; its classifier reads each label's first
sub-token. ``--label-token mean`` averages a label's sub-tokens instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

from mlbert.errors import UsageError


@dataclass(frozen=True)
class LabelSegment:
    """The label segment's text and, per label, its token positions in the encoded pair."""

    text: str
    positions: List[List[int]]
    length: int  # tokens of the pair (label segment, empty text), special tokens included


def segment_text(label_names: Sequence[str]) -> Tuple[str, List[Tuple[int, int]]]:
    """The label names as words (``_`` read as a space), one space apart, and each name's character span."""
    words, spans, start = [], [], 0
    for name in label_names:
        word = " ".join(name.replace("_", " ").split())
        if not word:
            raise UsageError(f"--label-input: the label name {name!r} has no letters to put in the input")
        words.append(word)
        spans.append((start, start + len(word)))
        start += len(word) + 1
    return " ".join(words), spans


def backend_tokenizer(tokenizer: Any) -> Any:
    """A ``tokenizers.Tokenizer`` copy of a transformers fast tokenizer (or of a Tokenizer), without
    truncation or padding: the form the model file stores and the runtime loads."""
    from tokenizers import Tokenizer

    backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
    copy = Tokenizer.from_str(backend.to_str())
    copy.no_truncation()
    copy.no_padding()
    return copy


def label_segment(tokenizer: Any, label_names: Sequence[str], max_length: int) -> LabelSegment:
    """The label segment of ``label_names`` and each label's token positions, as ``tokenizer`` encodes the pair.

    Positions come from the tokenizer itself (character offsets of the first segment's
    tokens), so any fast tokenizer and any pair template work. Refused when the segment
    leaves no room for text within ``max_length``.
    """
    text, spans = segment_text(label_names)
    backend = backend_tokenizer(tokenizer)
    encoding = backend.encode(text, "")
    positions: List[List[int]] = [[] for _ in label_names]
    for index, (sequence, (start, _)) in enumerate(zip(encoding.sequence_ids, encoding.offsets)):
        if sequence != 0:
            continue
        for label, (first, last) in enumerate(spans):
            if first <= start < last:
                positions[label].append(index)
                break
    empty = [name for name, tokens in zip(label_names, positions) if not tokens]
    if empty:
        raise UsageError(f"--label-input: the tokenizer gives no token for label(s) {', '.join(map(repr, empty))}")
    length = len(encoding.ids)
    if length >= max_length:
        raise UsageError(
            f"--label-input: the label names take {length} tokens with the special tokens, which leaves no room for "
            f"text within --max-length {max_length}; raise --max-length (the text gets what the labels leave)"
        )
    return LabelSegment(text=text, positions=positions, length=length)


def check_tokenizer(tokenizer: Any) -> None:
    """Label tokens are read at fixed positions: that needs a fast tokenizer that pads on the right."""
    if not getattr(tokenizer, "is_fast", False):
        raise UsageError("--label-input needs a fast tokenizer (tokenizer.json)")
    if getattr(tokenizer, "padding_side", "right") != "right":
        raise UsageError("--label-input needs a tokenizer that pads on the right (label tokens sit at fixed positions)")


def encode_pairs(tokenizer: Any, texts: Sequence[str], segment: str, max_length: int) -> Any:
    """Each text as the pair (label segment, text), only the text truncated, unpadded (the collator pads)."""
    return tokenizer([segment] * len(texts), list(texts), truncation="only_second", max_length=max_length)
