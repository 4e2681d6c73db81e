"""Shared fixtures: tiny random BERT checkpoints and ONNX files built offline in the session.

Nothing here downloads: the tokenizer is a WordPiece built from a small vocabulary and
the model is ``BertForSequenceClassification`` from a config with random weights.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLB_RAISE_ERRORS", "")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

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
    from mlbert.batch.modelfile import CheckpointConfig
    from mlbert.batch.preprocess import Preprocessing

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
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


def export_tiny_onnx(checkpoint: Path, folder: Path, name: str = "model.onnx") -> Path:
    """Export a checkpoint to one ONNX file with an mlb header, the way users do (mlb-export).

    The only place tests make ONNX files; ``exporter.export.export_model`` also verifies
    the file against PyTorch on its built-in sample before writing it. A copy without the
    mlb header is left at ``folder/optimum/model.onnx`` (what a plain optimum export gives)
    for tests of headerless files.
    """
    import onnx

    from mlbert.exporter.export import export_model

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    export_model(str(checkpoint), str(path))
    headerless = onnx.load(str(path))
    kept = [p for p in headerless.metadata_props if p.key != "mlb"]
    del headerless.metadata_props[:]
    headerless.metadata_props.extend(kept)
    (folder / "optimum").mkdir(exist_ok=True)
    onnx.save(headerless, str(folder / "optimum" / "model.onnx"))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint, tmp_path_factory) -> Path:
    """A read-only tiny ONNX model with an mlb header, exported once per session."""
    return export_tiny_onnx(tiny_checkpoint, tmp_path_factory.mktemp("tiny_onnx"))


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
    """Like ``tiny_onnx`` but with scores that differ clearly from text to text."""
    base = tmp_path_factory.mktemp("varied_onnx")
    checkpoint = write_varied_checkpoint(tiny_checkpoint, base / "checkpoint")
    return export_tiny_onnx(checkpoint, base)


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
