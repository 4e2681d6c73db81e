"""mlb-train under ``torchrun --nproc_per_node 2`` on CPU (gloo): one writer, gathered metrics.

About 20-30 s on 2 cores (two processes each import torch and transformers), so it is in
the default run; the tiny random BERT keeps the training itself to a few seconds.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbert.modelfile import CheckpointConfig
from conftest import REPO_ROOT, build_tiny_model, build_tiny_tokenizer, checkpoint_probabilities
from mlbert.trainer.hf_trainer import eval_schedule
from mlbert.trainer.train import TrainOptions, is_main_process, world_size

SEMEVAL = Path(__file__).parent / "fixtures" / "semeval_ec_sample.tsv"


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert is_main_process() and world_size() == 1
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert not is_main_process() and world_size() == 4
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()


def test_epoch_has_fewer_steps_with_more_processes():
    opts = TrainOptions(output="x", train="t", batch_size=8, epochs=2)
    one = eval_schedule(100, opts, 1)
    two = eval_schedule(100, opts, 2)
    assert (one["steps_per_epoch"], one["total_steps"], one["eval_steps"]) == (13, 26, 13)
    assert (two["steps_per_epoch"], two["total_steps"], two["eval_steps"]) == (7, 14, 7)


@pytest.fixture(scope="module")
def torchrun_model(tmp_path_factory):
    """Train with torchrun on 2 CPU processes; returns (output folder, process result, dev file)."""
    pytest.importorskip("torch.distributed.run")
    import torch.distributed

    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("this torch has no gloo backend")
    folder = tmp_path_factory.mktemp("ddp")
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(["x", "y"], vocab_size=len(tokenizer))
    model.save_pretrained(str(folder / "base"), safe_serialization=True)
    tokenizer.save_pretrained(str(folder / "base"))
    lines = SEMEVAL.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.tsv").write_text("".join(lines[:29]), encoding="utf-8")
    # 11 validation rows: an odd count, so the last eval batch is uneven across the two
    # processes and the gathered predictions must drop the padding duplicates.
    (folder / "dev.tsv").write_text(lines[0] + "".join(lines[29:40]), encoding="utf-8")
    out = folder / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), MLB_RAISE_ERRORS="1")
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "mlbert.trainer",
        "--train", str(folder / "train.tsv"), "--validation", str(folder / "dev.tsv"),
        "--base-model", str(folder / "base"), "--max-steps", "4", "--eval-steps", "2",
        "--batch-size", "4", "--max-length", "32", "--lr", "5e-3", "--device", "cpu", "-o", str(out),
    ]
    result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result, folder / "dev.tsv"


def test_torchrun_writes_one_valid_checkpoint(torchrun_model):
    out, result, _ = torchrun_model
    for name in ("model.safetensors", "config.json", "tokenizer.json", "mlb.json", "metrics.json",
                 "history.json", "eval_predictions.npz"):
        assert (out / name).is_file(), name
    assert not list(out.rglob("*.tmp")) and not list(out.glob("*.bin"))
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    config = CheckpointConfig.load(str(out))
    assert len(config.label_names) == 11 and len(config.thresholds) == 11
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["processes"] == 2
    assert metrics["training"]["global_step"] == 4
    assert metrics["training"]["validation_rows"] == 11
    assert metrics["thresholds"] == [float(t) for t in config.thresholds]
    # One process wrote and reported: one results table, one copy of each message.
    assert result.stdout.count("validation @ 0.5") == 1
    assert result.stderr.count("Data: 28 train, 11 validation rows") == 1
    assert result.stderr.count("Wrote ") == 1
    assert "x 2 processes" in result.stderr


def test_gathered_predictions_are_the_whole_split_in_order(torchrun_model):
    """eval_predictions.npz holds one row per validation row, in file order: the saved model
    reproduces them in one process, and the saved thresholds were tuned on exactly them."""
    from mlbert.trainer.data import read_labelled_file
    from mlbert.trainer.thresholds import tune_thresholds

    out, _, dev_path = torchrun_model
    config = CheckpointConfig.load(str(out))
    dev = read_labelled_file(str(dev_path))
    probs = checkpoint_probabilities(out, dev.texts, config.preprocessing, config.max_length)
    saved = np.load(out / "eval_predictions.npz", allow_pickle=False)
    assert saved["validation_probabilities"].shape == (11, 11)
    np.testing.assert_allclose(saved["validation_probabilities"], probs, atol=2e-4)
    np.testing.assert_array_equal(saved["validation_labels"], dev.labels)
    tuned = tune_thresholds(dev.labels, saved["validation_probabilities"], "jaccard")
    np.testing.assert_allclose(config.thresholds, tuned, atol=1e-6)
