"""The runtime side of label names in the input (format version 2), with the lean runtime only.

A model trained with ``mlb-train --label-input`` has a ``label_segment`` in its header; the
runtime must encode each text as the pair (label segment, text), cut only the text, feed the
pair's token types, and an older reader must refuse such a file instead of feeding texts
alone. The golden model's tokenizer stands in (the trainer side is tests/test_heads.py).
"""

import dataclasses

import numpy as np
import pytest

from mlbert import modelfile
from mlbert.errors import ModelFileError
from mlbert.modelfile import ModelHeader
from mlbert.runtime.encoder import Encoder
from mlbert.runtime.session import load_model

SEGMENT = "anger joy sadness surprise"


@pytest.fixture(scope="module")
def header(golden_model) -> ModelHeader:
    plain = load_model(str(golden_model), "cpu", threads=1).header
    return dataclasses.replace(plain, label_segment=SEGMENT, format_version=1)


def test_a_label_segment_makes_the_file_version_2_and_round_trips(header):
    assert header.format_version == 2
    back = ModelHeader.from_metadata(header.to_metadata())
    assert back.label_segment == SEGMENT and back.format_version == 2
    plain = dataclasses.replace(header, label_segment=None, format_version=1)
    assert plain.to_dict()["format_version"] == 1 and "label_segment" not in plain.to_dict()


def test_a_version_1_reader_refuses_a_label_segment_file(header, monkeypatch):
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 1)
    with pytest.raises(ModelFileError, match="upgrade mlb"):
        ModelHeader.from_metadata(header.to_metadata())


def test_texts_are_encoded_after_the_label_segment_and_only_they_are_cut(header):
    encoder = Encoder(header)
    alone = Encoder(dataclasses.replace(header, label_segment=None, format_version=1))
    segment_ids = alone.tokenizer.encode(SEGMENT).ids[:-1]  # [CLS] and the segment's tokens
    texts = ["so happy", "wow , i love this , great day with you " * 10]
    chunk = encoder.encode(texts)
    width = len(segment_ids) + 1  # the segment and its [SEP]
    for row in range(2):
        assert chunk.input_ids[row, :len(segment_ids)].tolist() == segment_ids
        assert chunk.token_type_ids[row, :width].tolist() == [0] * width
    real = int(chunk.lengths[0])
    assert chunk.token_type_ids[0, width:real].tolist() == [1] * (real - width)
    assert chunk.lengths[1] == header.max_length  # the long text was cut, the segment kept
    assert chunk.input_ids[0, width:real - 1].tolist() == alone.encode(["so happy"]).input_ids[0, 1:-1].tolist()
    cut = chunk.batch(np.array([1, 0]), 80)
    assert cut.token_type_ids.shape == (2, 80) and cut.token_type_ids[1, real:].sum() == 0


def test_plain_files_keep_zero_token_types_and_a_too_long_segment_is_refused(header):
    plain = Encoder(dataclasses.replace(header, label_segment=None, format_version=1))
    assert plain.encode(["so happy"]).token_type_ids is None  # the session feeds zeros, as before
    words = " ".join(["joy"] * header.max_length)
    with pytest.raises(ModelFileError, match="no room for text"):
        Encoder(dataclasses.replace(header, label_segment=words))
