"""The training levers of the second recipe study: multi-sample dropout, checkpoint and run averaging, and an
intermediate task (two stages), on a tiny random BERT (tests/conftest.py)."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny_model, build_tiny_tokenizer

torch = pytest.importorskip("torch")

from mlbert.errors import UsageError  # noqa: E402
from mlbert.modelfile import CheckpointConfig  # noqa: E402
from mlbert.trainer import head_dropout  # noqa: E402
from mlbert.trainer.checkpoint_soup import average_weights, ranked_steps  # noqa: E402
from mlbert.trainer.cli import main  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SEMEVAL = FIXTURES / "semeval_ec_sample.tsv"
GOEMO = FIXTURES / "goemotions_sample.tsv"
GOEMO_NAMES = FIXTURES / "goemotions_labels.txt"
FAST = ["--batch-size", "8", "--max-length", "32", "--lr", "5e-3"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("levers-base") / "tiny-bert"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(["x", "y"], vocab_size=len(tokenizer), initializer_range=0.5).save_pretrained(
        str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def semeval(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("levers-semeval")
    lines = SEMEVAL.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.tsv").write_text("".join(lines[:29]), encoding="utf-8")
    (folder / "dev.tsv").write_text(lines[0] + "".join(lines[29:]), encoding="utf-8")
    return folder


def run(args) -> None:
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        assert not exc.code, exc.code


def weights(folder: Path):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# --------------------------------------------------------------------------- multi-sample dropout


def test_multi_sample_dropout_scores_k_copies_in_training_and_one_pass_otherwise():
    model = build_tiny_model(["a", "b", "c"])
    head_dropout.install(model, 4)
    ids = torch.tensor([[2, 10, 11, 3], [2, 12, 3, 0]])
    mask = (ids > 0).long()
    model.train()
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (8, 3)
    model.eval()
    assert model(input_ids=ids, attention_mask=mask).logits.shape == (2, 3)
    logits = torch.arange(24, dtype=torch.float32).reshape(8, 3) / 10
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    expected = sum(bce(logits[2 * k:2 * k + 2], labels) for k in range(4)) / 4
    assert head_dropout.mean_sample_loss(logits, labels, 4, bce).item() == pytest.approx(expected.item())


def test_multi_sample_dropout_refuses_a_head_without_a_single_dropout():
    class Roberta(torch.nn.Module):
        classifier = torch.nn.Linear(4, 2)

    with pytest.raises(UsageError, match="--head-dropout-samples"):
        head_dropout.install(Roberta(), 3)


def test_msd_run_saves_a_plain_checkpoint(tiny_base, semeval, tmp_path):
    out = tmp_path / "msd"
    run(["--train", semeval / "train.tsv", "--validation", semeval / "dev.tsv", "--base-model", tiny_base,
         "--max-steps", "3", "--head-dropout-samples", "4", "-o", out, *FAST])
    hf = json.loads((out / "config.json").read_text())
    assert hf["architectures"] == ["BertForSequenceClassification"]
    assert CheckpointConfig.load(str(out)).provenance["training"]["head_dropout_samples"] == 4
    plain = build_tiny_model([str(i) for i in range(11)], vocab_size=len(build_tiny_tokenizer())).state_dict()
    assert set(weights(out)) == {k for k in plain if "position_ids" not in k}


# --------------------------------------------------------------------------- averaging


def test_ranked_steps_and_average_weights(tmp_path):
    from safetensors.torch import save_file

    history = [{"step": 2, "eval_tuned_samples_jaccard": 0.3}, {"step": 4, "eval_tuned_samples_jaccard": 0.5},
               {"step": 6, "eval_tuned_samples_jaccard": 0.5}, {"step": 6, "loss": 1.0}]
    assert ranked_steps(history, "tuned_samples_jaccard", True) == [6, 4, 2]
    assert ranked_steps([{"step": 2, "eval_loss": 0.3}, {"step": 4, "eval_loss": 0.2}], "loss", False) == [4, 2]
    for name, value in (("a", 1.0), ("b", 3.0)):
        (tmp_path / name).mkdir()
        save_file({"w": torch.full((2,), value), "n": torch.tensor([7])}, str(tmp_path / name / "model.safetensors"))
    mean = average_weights([str(tmp_path / "a"), str(tmp_path / "b")])
    assert mean["w"].tolist() == [2.0, 2.0] and mean["n"].tolist() == [7]


def test_average_checkpoints_averages_the_best_k_and_keeps_it_only_if_not_worse(tiny_base, semeval, tmp_path):
    out = tmp_path / "avg"
    run(["--train", semeval / "train.tsv", "--validation", semeval / "dev.tsv", "--base-model", tiny_base,
         "--max-steps", "8", "--eval-steps", "2", "--average-checkpoints", "2", "-o", out, *FAST])
    record = json.loads((out / "metrics.json").read_text())["training"]["checkpoint_average"]
    assert record["requested"] == 2 and len(record["checkpoints"]) == 2 and record["soup"] is not None
    assert record["kept"] == (record["soup"] >= record["best_single"])
    folders = [out / "checkpoints" / f"checkpoint-{s}" for s in record["checkpoints"]]
    assert all(f.is_dir() for f in folders)  # the best K were kept on disk
    saved = weights(out)
    expected = average_weights([str(f) for f in folders]) if record["kept"] else weights(folders[0])
    for name, value in expected.items():
        np.testing.assert_allclose(saved[name].numpy(), value.numpy(), atol=1e-6)


def test_soup_of_two_runs_averages_their_weights_and_tunes_thresholds(tiny_base, semeval, tmp_path):
    data = ["--train", semeval / "train.tsv", "--validation", semeval / "dev.tsv", "--test", SEMEVAL]
    for seed in (1, 2):
        run([*data, "--base-model", tiny_base, "--max-steps", "3", "--seed", seed, "-o", tmp_path / f"s{seed}", *FAST])
    out = tmp_path / "soup"
    run([*data, "--soup", tmp_path / "s1", "--soup", tmp_path / "s2", "-o", out])
    saved, a, b = weights(out), weights(tmp_path / "s1"), weights(tmp_path / "s2")
    name = "classifier.weight"
    np.testing.assert_allclose(saved[name].numpy(), (a[name].numpy() + b[name].numpy()) / 2, atol=1e-6)
    metrics = json.loads((out / "metrics.json").read_text())
    soup = metrics["training"]["soup"]
    assert [r["seed"] for r in soup["runs"]] == [1, 2] and "test" in metrics
    runs_seconds = [json.loads((tmp_path / f"s{s}" / "metrics.json").read_text())["training"]["train_seconds"]
                    for s in (1, 2)]
    assert metrics["training"]["train_seconds"] == pytest.approx(sum(runs_seconds), abs=0.2)
    assert CheckpointConfig.load(str(out)).provenance["soup"]["runs"][0]["run"] == str(tmp_path / "s1")


def test_soup_refuses_runs_of_other_labels(tiny_base, semeval, tmp_path, capsys):
    run(["--train", semeval / "train.tsv", "--base-model", tiny_base, "--max-steps", "1", "-o", tmp_path / "a", *FAST])
    run(["--train", GOEMO, "--label-names", GOEMO_NAMES, "--base-model", tiny_base, "--max-steps", "1",
         "-o", tmp_path / "b", *FAST])
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in ["--train", semeval / "train.tsv", "--soup", tmp_path / "a", "--soup", tmp_path / "b",
                               "-o", tmp_path / "c"]])
    assert exc.value.code == 2 and "other labels" in capsys.readouterr().err


# --------------------------------------------------------------------------- an intermediate task


def test_an_earlier_mlb_checkpoint_with_other_labels_is_a_base(tiny_base, semeval, tmp_path):
    from mlbert.trainer.head import load_model_and_tokenizer
    from mlbert.trainer.head_loading import HeadSpec

    first = tmp_path / "first"
    run(["--train", GOEMO, "--label-names", GOEMO_NAMES, "--base-model", tiny_base, "--max-steps", "2",
         "-o", first, *FAST])
    trained = weights(first)
    names = ["anger", "joy", "sadness"]
    model, _, new_head = load_model_and_tokenizer(str(first), names)
    assert new_head and model.classifier.out_features == 3
    state = model.state_dict()
    encoder = [k for k in trained if k.startswith("bert.encoder.")]
    assert encoder and all(torch.equal(state[k], trained[k]) for k in encoder)
    mean, _, new_head = load_model_and_tokenizer(str(first), names, HeadSpec(pooling="mean"))
    assert new_head and all(torch.equal(mean.encoder.state_dict()[k[len("bert."):]], trained[k]) for k in encoder)


def test_intermediate_task_runs_two_stages_and_records_both(tiny_base, semeval, tmp_path, monkeypatch):
    from mlbert.trainer import train as train_module

    loads = []
    original = train_module.load_model_and_tokenizer

    def recording(base, names, *args, **kwargs):
        model, tokenizer, new_head = original(base, names, *args, **kwargs)
        loads.append((base, list(names), new_head, {k: v.clone() for k, v in model.state_dict().items()}))
        return model, tokenizer, new_head

    monkeypatch.setattr(train_module, "load_model_and_tokenizer", recording)
    out = tmp_path / "two"
    run(["--train", semeval / "train.tsv", "--validation", semeval / "dev.tsv", "--base-model", tiny_base,
         "--intermediate-train", GOEMO, "--intermediate-label-names", GOEMO_NAMES,
         "--intermediate-validation", GOEMO, "--intermediate-max-steps", "3", "--max-steps", "2", "-o", out, *FAST])
    first, second = loads
    goemo_names = GOEMO_NAMES.read_text().split("\n")
    assert first[0] == tiny_base and first[1] == goemo_names
    assert second[0] == str(out / "intermediate") and len(second[1]) == 11 and second[2] is True
    stage_one = weights(out / "intermediate")
    encoder = [k for k in stage_one if k.startswith("bert.encoder.") or k.startswith("bert.pooler.")]
    assert all(torch.equal(second[3][k], stage_one[k]) for k in encoder)  # the encoder and pooler carried over
    assert second[3]["classifier.weight"].shape[0] == 11
    assert not (out / "intermediate" / "checkpoints").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["training"]["intermediate"]
    assert record["global_step"] == 3 and record["label_names"] == goemo_names and record["total_seconds"] > 0
    assert metrics["training"]["all_stages_seconds"] == pytest.approx(
        record["total_seconds"] + metrics["training"]["total_seconds"], abs=0.2)
    config = CheckpointConfig.load(str(out))
    assert config.label_names[0] == "anger" and config.provenance["intermediate"]["train_rows"] == record["train_rows"]
    assert config.provenance["training"]["pooler"] == "keep"
    assert CheckpointConfig.load(str(out / "intermediate")).label_names == goemo_names


def test_intermediate_options_need_intermediate_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--train", str(SEMEVAL), "--intermediate-label-names", str(GOEMO_NAMES), "-o", str(tmp_path / "x")])
    assert exc.value.code == 2 and "needs --intermediate-train" in capsys.readouterr().err
