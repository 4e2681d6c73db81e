"""Shared fixtures: tiny random BERT checkpoints and ONNX files built offline in the session,
the committed golden model, and the GoEmotions files shipped in data/.

Nothing here downloads: the tokenizer is a WordPiece built from a small vocabulary and
the model is ``BertForSequenceClassification`` from a config with random weights.

Module level imports only what the runtime has (stdlib, numpy, pytest): tests/runtime/ runs
under this file in a virtual environment without torch, transformers, optimum or onnx
(scripts/test_runtime_only.sh), so those are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLB_RAISE_ERRORS", "")

REPO_ROOT = Path(__file__).resolve().parent.parent
GOEMOTIONS = REPO_ROOT / "data" / "goemotions"
FIXTURES = REPO_ROOT / "tests" / "fixtures"
# Made by scripts/make_golden_model.py and committed: runtime tests need no exporter.
GOLDEN_MODEL = FIXTURES / "golden.onnx"
GOLDEN_EXPECTED = FIXTURES / "golden_expected.json"
# Bytes of the golden model that tests damage in place, keeping lengths so that the protobuf
# stays valid and no onnx package is needed: the metadata entry holding the mlb header
# (StringStringEntryProto: field 1, 3 bytes, "mlb", then field 2) and the tokenizer checksum.
HEADER_ENTRY = b"\x0a\x03mlb\x12"
TOKENIZER_CHECKSUM = b'"tokenizer":{"format":"huggingface-tokenizers-json","sha256":"'

TINY_LABELS = ["anger", "joy", "sadness", "surprise"]

_WORDS = (
    "i am so happy sad angry glad mad love hate it this that the a is was not very "
    "what wow oh no yes great terrible awful good bad day today tomorrow face with tears of joy "
    "heart user http surprised shocked cry smile laugh fear scared afraid excited win lost "
    "hello world you me we they he she thumbs up sign , . ! ? ' @ # : ) ("
).split()


def build_tiny_tokenizer():
    """A BERT-style fast tokenizer over a small vocabulary (uncased, WordPiece)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab_list = specials + sorted(set(_WORDS)) + letters + ["##" + c for c in letters]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None, clean_text=True, handle_chinese_chars=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        mask_token="[MASK]",
        do_lower_case=True,
        model_max_length=512,
    )


def build_tiny_model(label_names, seed: int = 0, vocab_size: int = 200, initializer_range: float = 0.02):
    """A 2-layer, 32-wide random BERT with a multi-label head.

    A larger ``initializer_range`` makes outputs differ clearly from text to text, which
    tests of row order need (the default init scores every text almost the same).
    """
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=len(label_names),
        id2label={i: n for i, n in enumerate(label_names)},
        label2id={n: i for i, n in enumerate(label_names)},
        problem_type="multi_label_classification",
        initializer_range=initializer_range,
    )
    return BertForSequenceClassification(config)


def write_tiny_checkpoint(folder: Path, label_names=TINY_LABELS, thresholds=None, preprocessing=None, seed: int = 0) -> Path:
    """A checkpoint shaped like mlb-train's output: HF files plus mlb.json."""
    from mlbert.modelfile import CheckpointConfig
    from mlbert.preprocess import Preprocessing

    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(label_names, seed=seed, vocab_size=len(tokenizer))
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    CheckpointConfig(
        label_names=list(label_names),
        thresholds=list(thresholds or [0.5] * len(label_names)),
        preprocessing=preprocessing or Preprocessing(emoji="words", mentions="token", urls="token"),
        max_length=64,
        threshold_objective="none",
        provenance={"made_by": "tests/conftest.py"},
    ).save(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A read-only tiny checkpoint for the whole session; copy it before changing it."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "checkpoint")


@pytest.fixture(scope="session")
def goemotions_data() -> Path:
    """The GoEmotions train/dev/test files shipped in data/goemotions (gzip-compressed TSV)."""
    return GOEMOTIONS


@pytest.fixture(scope="session")
def golden_model() -> Path:
    """The committed tiny model (4 labels, max length 64, scores that differ from text to text)."""
    return GOLDEN_MODEL


@pytest.fixture(scope="session")
def golden() -> Dict[str, Any]:
    """What PyTorch said about the golden model: per text, probabilities and labels."""
    return json.loads(GOLDEN_EXPECTED.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def expected(golden) -> Dict[str, np.ndarray]:
    """The golden model's PyTorch probabilities by raw text."""
    return {row["text"]: np.array(row["probabilities"], dtype=np.float32) for row in golden["rows"]}


def damaged_model_files(source: Path, folder: Path) -> Dict[str, Path]:
    """Broken stand-ins for the model file ``source``, by kind, written into ``folder``."""
    data = source.read_bytes()
    assert data.count(HEADER_ENTRY) == 1 and data.count(TOKENIZER_CHECKSUM) == 1
    start = data.index(TOKENIZER_CHECKSUM) + len(TOKENIZER_CHECKSUM)
    flipped = b"0" if data[start:start + 1] != b"0" else b"1"
    contents = {
        "not-onnx": b"this is not a model\n",
        "truncated": data[: len(data) // 2],
        "headerless": data.replace(HEADER_ENTRY, b"\x0a\x03xyz\x12"),  # a valid ONNX file, no mlb entry
        "checksum": data[:start] + flipped + data[start + 1:],
    }
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"missing": folder / "missing.onnx", "folder": folder / "a-folder.onnx"}
    paths["folder"].mkdir(exist_ok=True)
    for kind, content in contents.items():
        paths[kind] = folder / f"{kind}.onnx"
        paths[kind].write_bytes(content)
    return paths


def export_tiny_onnx(checkpoint: Path, folder: Path, name: str = "model.onnx") -> Path:
    """Export a checkpoint to one ONNX file with an mlb header, the way users do (mlb-export).

    ``exporter.export.export_model`` also verifies the file against PyTorch on its built-in
    sample before writing it.
    """
    from mlbert.exporter.export import export_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    export_model(str(checkpoint), str(path))
    return path


def write_varied_checkpoint(source: Path, folder: Path, seed: int = 1, std: float = 0.3) -> Path:
    """A copy of a tiny checkpoint whose weights are redrawn with a large spread.

    The default BERT initialisation (std 0.02) gives nearly the same scores for every
    text, so tests about order, bucketing and thresholds could not tell rows apart.
    """
    import shutil

    import torch
    from transformers import BertForSequenceClassification

    shutil.copytree(source, folder)
    model = BertForSequenceClassification.from_pretrained(str(folder))
    torch.manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, std)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


@pytest.fixture(scope="session")
def varied_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """A tiny ONNX model exported in the session, scores differing clearly from text to text;
    its checkpoint lies beside it (``parent / "checkpoint"``) for tests that compare the two."""
    base = tmp_path_factory.mktemp("varied_onnx")
    checkpoint = write_varied_checkpoint(tiny_checkpoint, base / "checkpoint")
    return export_tiny_onnx(checkpoint, base)


@pytest.fixture(scope="session")
def varied_int8_onnx(varied_onnx, tmp_path_factory) -> Path:
    """``varied_onnx`` quantized to int8 with the batch-dependent scheme kept as an option (``unfused``:
    one activation scale per batch tensor): its scores depend on how rows are grouped into batches, so
    byte-for-byte comparisons of engines' chunking mean something. (The default scheme's do not.)"""
    from mlbert.exporter.export import export_model

    path = tmp_path_factory.mktemp("varied_int8") / "int8.onnx"
    export_model(str(varied_onnx.parent / "checkpoint"), str(path), quantize="int8", quantize_config="unfused",
                 force=True)
    return path


def checkpoint_probabilities(folder: Path, texts, preprocessing, max_length: int):
    """Sigmoid outputs of a saved checkpoint on ``texts`` in one PyTorch pass, preprocessed as
    mlb.json says: what the trainer's saved validation probabilities must reproduce."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    enc = tokenizer(preprocessing.apply(list(texts)), truncation=True, max_length=max_length, padding=True,
                    return_tensors="pt")
    with torch.no_grad():
        return torch.sigmoid(model(**enc).logits).numpy()
