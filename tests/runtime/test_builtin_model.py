"""The built-in model: shipped in the package, used when no model is named, one clear error when broken.

Resolution order, the same for ``mlb-batch`` and ``mlbert.load``: the model the caller names
(``--model`` / ``load(model)``), else ``MLB_MODEL``, else the built-in ``goemotions``. These tests
run against the installed package too (scripts/test_runtime_only.sh), which proves the wheel
carries the file.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

import mlbert
from mlbert.errors import ModelFileError
from mlbert.models import BUILTIN_MODELS, BuiltinModel, resolve_model

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden.onnx"
GOEMOTIONS_LABELS = ["admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion", "curiosity",
                     "desire", "disappointment", "disapproval", "disgust", "embarrassment", "excitement", "fear",
                     "gratitude", "grief", "joy", "love", "nervousness", "optimism", "pride", "realization", "relief",
                     "remorse", "sadness", "surprise", "neutral"]


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv("MLB_MODEL", raising=False)


@pytest.fixture
def relocated_builtin(tmp_path, monkeypatch):
    """The built-in entry pointed at a copy in a temporary folder, which a test may remove or damage."""
    shipped = BUILTIN_MODELS["goemotions"]
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(shipped.path, folder / shipped.file)
    moved = BuiltinModel(name=shipped.name, file=shipped.file, card=shipped.card, labels=shipped.labels,
                         summary=shipped.summary)
    monkeypatch.setattr("mlbert.models._HERE", str(folder))
    monkeypatch.setitem(BUILTIN_MODELS, "goemotions", moved)
    return folder / shipped.file


def test_the_package_ships_the_model_and_its_card():
    model = BUILTIN_MODELS["goemotions"]
    assert os.path.getsize(model.path) < 30 * 1024 * 1024  # a normal wheel
    card = Path(model.card_path).read_text(encoding="utf-8")
    for needed in ("GoEmotions", "Apache", "all-MiniLM-L6-v2", "Reddit", "English", "28"):
        assert needed in card, needed


def test_load_without_a_model_is_the_builtin_goemotions_classifier(no_env):
    clf = mlbert.load(device="cpu", threads=1)
    assert clf.label_names == GOEMOTIONS_LABELS
    assert clf.description == "built-in goemotions (28 labels)"
    top = clf.predict("Thank you so much, this made my day!", output="pipeline")[0]
    assert top["label"] in {"gratitude", "joy", "admiration"}, top
    assert clf.predict("Thank you so much, this made my day!")["labels"], "a clear text gets at least one label"


def test_resolution_order_model_then_environment_then_builtin(monkeypatch, tmp_path):
    monkeypatch.setenv("MLB_MODEL", str(GOLDEN))
    assert resolve_model(None).source == str(GOLDEN)  # MLB_MODEL over the built-in
    other = tmp_path / "other.onnx"
    shutil.copy(GOLDEN, other)
    assert resolve_model(str(other)).source == str(other)  # the named model over MLB_MODEL
    assert resolve_model("goemotions").builtin is BUILTIN_MODELS["goemotions"]  # a built-in by name
    assert resolve_model("builtin:goemotions").builtin is BUILTIN_MODELS["goemotions"]
    monkeypatch.setenv("MLB_MODEL", "goemotions")
    assert resolve_model(None).builtin is BUILTIN_MODELS["goemotions"]
    monkeypatch.delenv("MLB_MODEL")
    assert resolve_model(None).builtin is BUILTIN_MODELS["goemotions"]
    assert mlbert.load(device="cpu", threads=1).label_names == GOEMOTIONS_LABELS


def test_a_file_named_like_a_builtin_model_is_that_file(tmp_path, monkeypatch, no_env):
    shutil.copy(GOLDEN, tmp_path / "goemotions")
    monkeypatch.chdir(tmp_path)
    assert resolve_model("goemotions").builtin is None
    assert mlbert.load("goemotions", device="cpu", threads=1).label_names != GOEMOTIONS_LABELS


def test_an_unknown_builtin_name_is_one_line(no_env):
    with pytest.raises(ModelFileError, match=r"model 'builtin:nope': no such built-in model \(built-in: goemotions\)"):
        mlbert.load("builtin:nope")


def test_a_missing_builtin_file_is_one_clear_error(relocated_builtin, no_env):
    relocated_builtin.unlink()
    with pytest.raises(ModelFileError) as info:
        mlbert.load(device="cpu")
    message = str(info.value)
    assert "built-in model 'goemotions' is missing from this installation" in message
    assert "pip install --force-reinstall mlbert" in message and "\n" not in message


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_builtin_file_is_one_clear_error(damage, relocated_builtin, no_env):
    data = relocated_builtin.read_bytes()
    relocated_builtin.write_bytes(data[: len(data) // 3] if damage == "truncated" else bytes(len(data)))
    with pytest.raises(ModelFileError) as info:
        mlbert.load(device="cpu")
    message = str(info.value)
    assert message.startswith("the built-in model goemotions (") and "pip install --force-reinstall mlbert" in message
    assert "not a readable ONNX model" in message and "\n" not in message


# -- mlb-batch ------------------------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "tweets.csv"


def _batch(args, env):
    from click.testing import CliRunner

    from mlbert.batch.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args], env=env, catch_exceptions=False)


def _records(path: Path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_mlb_batch_with_no_model_named_uses_the_builtin_one(tmp_path):
    out = tmp_path / "labels.jsonl"
    result = _batch([SAMPLE, "-o", out, "--threads", "1"], env={"MLB_MODEL": None})
    assert result.exit_code == 0, result.stderr
    rows = SAMPLE.read_text(encoding="utf-8").count("\n") - 1
    recs = _records(out)
    assert len(recs) == rows == 30
    assert [r["id"] for r in recs] == [str(i) for i in range(1, rows + 1)]
    assert all(set(r["scores"]) == set(GOEMOTIONS_LABELS) for r in recs)
    assert all(set(r["labels"]) <= set(GOEMOTIONS_LABELS) for r in recs)
    assert result.stderr.rstrip().endswith("; model: built-in goemotions (28 labels)"), result.stderr


def test_mlb_batch_resolution_order(tmp_path, golden_model):
    source = tmp_path / "in.txt"
    source.write_text("so happy today\n", encoding="utf-8")
    by_env = _batch([source, "-o", tmp_path / "a.jsonl"], env={"MLB_MODEL": str(golden_model)})
    assert by_env.exit_code == 0 and f"; model: {golden_model} (4 labels)" in by_env.stderr, by_env.stderr
    named = _batch([source, "-o", tmp_path / "b.jsonl", "-m", "goemotions"], env={"MLB_MODEL": str(golden_model)})
    assert named.exit_code == 0 and "; model: built-in goemotions (28 labels)" in named.stderr, named.stderr
    env_name = _batch([source, "-o", tmp_path / "c.jsonl"], env={"MLB_MODEL": "goemotions"})
    assert "; model: built-in goemotions (28 labels)" in env_name.stderr, env_name.stderr
    assert set(_records(tmp_path / "c.jsonl")[0]["scores"]) == set(GOEMOTIONS_LABELS)


def test_mlb_batch_with_a_missing_builtin_file_is_one_line_and_exit_1(relocated_builtin, tmp_path):
    relocated_builtin.unlink()
    out = tmp_path / "labels.jsonl"
    out.write_text("yesterday\n", encoding="utf-8")
    result = _batch([SAMPLE, "-o", out], env={"MLB_MODEL": None})
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "built-in model 'goemotions' is missing" in result.stderr
    assert out.read_text(encoding="utf-8") == "yesterday\n"


def test_mlb_batch_with_a_damaged_builtin_file_is_one_line_and_exit_1(relocated_builtin, tmp_path):
    relocated_builtin.write_bytes(relocated_builtin.read_bytes()[:4096])
    result = _batch([SAMPLE, "-o", tmp_path / "labels.jsonl"], env={"MLB_MODEL": None})
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: the built-in model goemotions (") and "not a readable ONNX model" in result.stderr
