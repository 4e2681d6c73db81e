"""mlb's own heads: mean pooling and the label names in the input, through train, checkpoint, export and runtime.

A tiny random BERT stands in for all-MiniLM-L6-v2 (tests/conftest.py). What must hold:
padding never changes a row's mean; the label segment is encoded the same way by the
trainer (transformers) and the runtime (tokenizers, from the model file); the exported graph
computes what PyTorch computes (the exporter's own parity gate, 1e-4, plus a direct
comparison here); plain transformers refuses these checkpoints loudly; files from before
stay readable.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, build_tiny_model, build_tiny_tokenizer

torch = pytest.importorskip("torch")

from mlbert.errors import UsageError  # noqa: E402
from mlbert.modelfile import CheckpointConfig  # noqa: E402
from mlbert.trainer.cli import main  # noqa: E402
from mlbert.trainer.head import load_model_and_tokenizer  # noqa: E402
from mlbert.trainer.head_loading import HeadSpec  # noqa: E402
from mlbert.trainer.label_input import encode_pairs, label_segment, segment_text  # noqa: E402

LABELS = ["anger", "joy", "sadness", "surprise"]
ROWS = [
    ("i am so angry and mad", [1, 0, 0, 0]), ("so happy today", [0, 1, 0, 0]), ("a sad day , i cry", [0, 0, 1, 0]),
    ("wow i am so surprised", [0, 0, 0, 1]), ("i hate this , so mad", [1, 0, 0, 0]), ("what a great day", [0, 1, 0, 0]),
    ("i lost , so sad", [0, 0, 1, 0]), ("oh wow , shocked", [0, 0, 0, 1]), ("angry at you", [1, 0, 0, 0]),
    ("love it , glad", [0, 1, 0, 0]), ("tears , so sad", [0, 0, 1, 0]), ("wow what a win", [0, 1, 0, 1]),
]
FAST = ["--batch-size", "4", "--max-length", "48", "--lr", "5e-3", "--max-steps", "4", "--eval-steps", "2"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("heads-base") / "tiny-bert"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(["x", "y"], vocab_size=len(tokenizer), initializer_range=0.3).save_pretrained(
        str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("heads-data")
    lines = ["text\t" + "\t".join(LABELS)] + [text + "\t" + "\t".join(map(str, y)) for text, y in ROWS]
    (folder / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "dev.tsv").write_text("\n".join(lines[:1] + lines[1:9]) + "\n", encoding="utf-8")
    return folder


def train_cli(args) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, exc.code


@pytest.fixture(scope="module")
def mean_run(tiny_base, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mean") / "run"
    train_cli(["--train", data / "train.tsv", "--validation", data / "dev.tsv", "--base-model", tiny_base,
               "--pooling", "mean", "-o", out, *FAST])
    return out


@pytest.fixture(scope="module")
def labels_run(tiny_base, data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("labels") / "run"
    train_cli(["--train", data / "train.tsv", "--validation", data / "dev.tsv", "--base-model", tiny_base,
               "--label-input", "--label-token", "mean", "-o", out, *FAST])
    return out


# --------------------------------------------------------------------------- mean pooling


def test_padding_does_not_change_a_rows_mean_pooled_output(tiny_base):
    model, tokenizer, new_head = load_model_and_tokenizer(tiny_base, LABELS, HeadSpec(pooling="mean"))
    assert new_head and model.config.model_type == "mlb-classifier" and model.encoder.pooler is None
    model.eval()
    short, long_ = "so happy", "i am so angry and mad at you today , what a terrible awful day"
    alone = tokenizer([short], return_tensors="pt")
    padded = tokenizer([short, long_], padding=True, return_tensors="pt")
    assert padded["attention_mask"][0].sum() < padded["attention_mask"].shape[1]  # the short row is padded
    with torch.no_grad():
        one = model(**alone).logits[0]
        batch = model(**padded).logits
    np.testing.assert_allclose(one.numpy(), batch[0].numpy(), atol=1e-5)
    assert not np.allclose(batch[0].numpy(), batch[1].numpy(), atol=1e-3)  # rows do differ
    # and it is the mean of the real tokens' hidden states
    with torch.no_grad():
        hidden = model.encoder(**padded).last_hidden_state[0]
        n = int(padded["attention_mask"][0].sum())
        expected = model.classifier(hidden[:n].mean(dim=0))
    np.testing.assert_allclose(batch[0].numpy(), expected.numpy(), atol=1e-5)


def test_mean_run_records_the_pooling_and_plain_transformers_refuses_it(mean_run):
    config = CheckpointConfig.load(str(mean_run))
    assert config.head == {"pooling": "mean"} and config.label_segment is None
    hf = json.loads((mean_run / "config.json").read_text())
    assert hf["model_type"] == "mlb-classifier" and hf["pooling"] == "mean" and hf["encoder"]["model_type"] == "bert"
    assert "bert.pooler.dense.weight" not in json.dumps(hf)
    provenance = config.provenance["training"]
    assert provenance["pooling"] == "mean" and provenance["label_input"] is False
    # A fresh interpreter without mlbert's registration: transformers must not read it as a [CLS] model.
    code = ("from transformers import AutoModelForSequenceClassification as A\n"
            f"A.from_pretrained({str(mean_run)!r})")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(REPO_ROOT))
    assert result.returncode != 0
    assert "mlb-classifier" in result.stderr


def test_mean_model_exports_with_parity_and_int8_and_mlb_eval_reads_the_checkpoint(mean_run, data, tmp_path):
    import mlbert
    from mlbert.exporter.export import export_model
    from mlbert.trainer.evaluate import load_eval_model

    result = export_model(str(mean_run), str(tmp_path / "mean.onnx"))
    assert result.reports[0].passed and result.reports[0].max_abs_diff <= 1e-4
    assert result.header.head == {"pooling": "mean"} and result.header.format_version == 1
    texts = [text for text, _ in ROWS]
    torch_side = load_eval_model(str(mean_run), device="cpu").predict_proba(texts)
    onnx_side = mlbert.load(str(tmp_path / "mean.onnx"), device="cpu").predict_proba(texts)
    np.testing.assert_allclose(torch_side, onnx_side, atol=1e-4)
    quantized = export_model(str(mean_run), str(tmp_path / "mean-int8.onnx"), quantize="int8",
                             validate_on=str(data / "train.tsv"))
    assert quantized.header.quantization["mode"] == "int8"
    assert all(report.passed for report in quantized.reports)
    fused = export_model(str(mean_run), str(tmp_path / "mean-fused.onnx"), quantize="int8",
                         quantize_config="portable", validate_on=str(data / "train.tsv"))
    assert all(report.passed for report in fused.reports)  # the fused fp32 graph is checked exactly too
    counts = fused.header.provenance["fusion"]["fused_operators"]
    assert counts.get("Attention") and counts.get("SkipLayerNormalization"), counts  # the encoder is recognised


# --------------------------------------------------------------------------- label names in the input


def test_label_segment_positions_and_token_types():
    tokenizer = build_tiny_tokenizer()
    text, spans = segment_text(["anger", "joy", "very_sad"])
    assert text == "anger joy very sad" and spans == [(0, 5), (6, 9), (10, 18)]
    segment = label_segment(tokenizer, LABELS, max_length=48)
    encoded = tokenizer(segment.text, "so happy")
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    # [CLS] a ##n ##g ##e ##r joy sad ##n ##e ##s ##s s ##u ... [SEP] so happy [SEP]: the tiny vocabulary has
    # "joy" and "sad", and spells the rest out letter by letter
    assert segment.positions == [[1, 2, 3, 4, 5], [6], [7, 8, 9, 10, 11], list(range(12, 20))]
    assert tokens[0] == "[CLS]" and tokens[6] == "joy" and tokens[20] == "[SEP]"
    assert [tokens[i] for i in segment.positions[2]] == ["sad", "##n", "##e", "##s", "##s"]
    first_text = segment.length - 1  # the pair (segment, "") ends with [SEP] [SEP]
    assert encoded["token_type_ids"][:first_text] == [0] * first_text
    assert encoded["token_type_ids"][first_text:] == [1, 1, 1]  # so, happy, [SEP]
    with pytest.raises(UsageError, match="no room for text"):
        label_segment(tokenizer, LABELS, max_length=segment.length)


def test_runtime_encodes_the_label_segment_as_training_did():
    from mlbert.modelfile import ModelHeader
    from mlbert.preprocess import Preprocessing
    from mlbert.runtime.encoder import Encoder
    from mlbert.trainer.label_input import backend_tokenizer

    tokenizer = build_tiny_tokenizer()
    segment = label_segment(tokenizer, LABELS, max_length=24)
    texts = ["so happy", "i am so angry and mad at you today , what a terrible awful day and more words here"]
    trained = encode_pairs(tokenizer, texts, segment.text, 24)
    header = ModelHeader(label_names=LABELS, thresholds=[0.5] * 4, preprocessing=Preprocessing(), max_length=24,
                         tokenizer_json=backend_tokenizer(tokenizer).to_str(), input_names=["input_ids"],
                         label_segment=segment.text)
    assert header.format_version == 2 and header.to_dict()["label_segment"] == segment.text
    chunk = Encoder(header).encode(texts)
    for row, ids in enumerate(trained["input_ids"]):
        assert chunk.input_ids[row, :len(ids)].tolist() == ids
        assert chunk.token_type_ids[row, :len(ids)].tolist() == trained["token_type_ids"][row]
    assert chunk.lengths.tolist() == [len(ids) for ids in trained["input_ids"]] and chunk.lengths[1] == 24
    batch = chunk.batch(np.array([0]), 32)  # cut and padded rows keep their token types
    assert batch.token_type_ids.shape == (1, 32) and batch.token_type_ids[0, :len(trained["input_ids"][0])].tolist() \
        == trained["token_type_ids"][0]


def test_label_input_trains_records_and_exports_with_parity(labels_run, tmp_path):
    import mlbert
    from mlbert.exporter.export import export_model
    from mlbert.trainer.evaluate import load_eval_model

    config = CheckpointConfig.load(str(labels_run))
    assert config.label_segment == "anger joy sadness surprise"
    assert config.head == {"pooling": "label-tokens", "label_token": "mean", "label_segment": config.label_segment}
    hf = json.loads((labels_run / "config.json").read_text())
    assert hf["label_positions"][1] == [6] and len(hf["label_positions"][0]) == 5
    result = export_model(str(labels_run), str(tmp_path / "labels.onnx"))
    assert result.reports[0].passed and result.reports[0].max_abs_diff <= 1e-4
    assert result.header.format_version == 2 and result.header.label_segment == config.label_segment
    assert "token_type_ids" in result.header.input_names
    texts = [text for text, _ in ROWS] + ["a much longer text , so that the batch is padded : " * 2]
    classifier = mlbert.load(str(tmp_path / "labels.onnx"), device="cpu")
    classifier.warm_up()
    np.testing.assert_allclose(load_eval_model(str(labels_run), device="cpu").predict_proba(texts),
                               classifier.predict_proba(texts), atol=1e-4)
    # one row alone scores as it does in a batch
    np.testing.assert_allclose(classifier.predict_proba(texts[:1]), classifier.predict_proba(texts)[:1], atol=1e-5)


def test_a_version_2_file_is_refused_by_a_version_1_reader(labels_run, tmp_path, monkeypatch):
    from mlbert import modelfile
    from mlbert.errors import ModelFileError
    from mlbert.exporter.export import export_model

    path = tmp_path / "labels.onnx"
    export_model(str(labels_run), str(path))
    monkeypatch.setattr(modelfile, "FORMAT_VERSION", 1)
    import mlbert

    with pytest.raises(ModelFileError, match="upgrade mlb"):
        mlbert.load(str(path), device="cpu")


def test_head_options_are_checked(tiny_base, data, tmp_path, capsys):
    args = ["--train", data / "train.tsv", "--base-model", tiny_base, "-o", tmp_path / "x"]
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args + ["--label-input", "--pooling", "mean"]])
    assert exc.value.code == 2 and "cannot be combined with --pooling" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args + ["--label-input", "--max-length", "8"]])
    assert exc.value.code == 2 and "no room for text" in capsys.readouterr().err


def test_a_cls_run_refuses_an_mlb_head_base_and_the_mean_head_keeps_its_own_head(mean_run):
    with pytest.raises(UsageError, match="--pooling mean"):
        load_model_and_tokenizer(str(mean_run), LABELS)
    model, _, new_head = load_model_and_tokenizer(str(mean_run), LABELS, HeadSpec(pooling="mean"))
    assert new_head is False  # the same head over the same labels: trained further
    _, _, new_head = load_model_and_tokenizer(str(mean_run), LABELS[:3], HeadSpec(pooling="mean"))
    assert new_head is True
    _, _, new_head = load_model_and_tokenizer(str(mean_run), LABELS, HeadSpec(label_input=True), 48)
    assert new_head is True
