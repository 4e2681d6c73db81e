"""The GPU check (benchmarks/gpu/check.py) without a GPU: its CPU half end to end on the installed
commands, the step machinery, the report's targets, and the CUDA code paths that can be checked on a CPU."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import List

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
GPU_CHECK = ROOT / "benchmarks" / "gpu"
sys.path.insert(0, str(GPU_CHECK))

import check  # noqa: E402
import measure  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402


# --------------------------------------------------------------------------- the CPU half, end to end


def test_cpu_half_runs_every_step(tiny_checkpoint, tmp_path):
    """What CI keeps working: train, export, classify, compare with the CPU, the pipeline, the results page.

    ``--in-process`` calls the installed console scripts' entry points in this process (the
    refusal of ``--device cuda`` runs the installed ``mlb-batch`` in its own process)."""
    import mlbert

    out = tmp_path / "out"
    code = check.main(["run", "--cpu", "--in-process", "--base-model", str(tiny_checkpoint), "--out", str(out),
                       "--steps", "2", "--rows", "150"])
    results = json.loads((out / "results.json").read_text())
    assert code == 0, [s for s in results["steps"] if s["status"] != "ok"]
    assert [s["name"] for s in results["steps"]] == [
        "stack", "data", "train-accel", "export-fp32", "cuda-refusal", "batch-accel-fp32", "score-cpu-fp32",
        "score-accel-fp32", "agreement", "pipeline-16", "pipeline-4", "train-cpu"]
    for key in ("train_accelerator", "train_cpu"):
        t = results[key]
        assert t["steps"] == 2 and t["precision"] == "fp32" and t["step_seconds"] > 0
        assert t["epoch_seconds"] == pytest.approx(t["step_seconds"] * t["steps_per_epoch"], rel=0.01, abs=0.1)
        assert set(t["test"]) == {"samples_jaccard", "micro_f1", "macro_f1"}
    batch = results["batch"]["fp32"]
    assert batch["rows"] == 150 and batch["errors"] == 0 and batch["provider"] == "CPUExecutionProvider"
    assert len((out / "work" / "batch-accel-fp32.jsonl").read_text().splitlines()) == 150
    fp32 = results["agreement"]["accel-fp32"]
    assert fp32["passed"] and fp32["max_abs_diff"] <= 1e-6 and fp32["rows"] == 150
    assert results["agreement"]["mlb_batch_fp32_rows_with_other_labels"] == 0
    # A machine without a usable CUDA provider: one line that says what is missing, no output file.
    refusal = results["cuda_refusal"]
    assert refusal["exit_code"] in (1, 2) and refusal["message"].startswith("Error: --device cuda")
    for batch_size in ("16", "4"):
        pipe = results["pipeline"][batch_size]
        assert pipe["rows"] == 60 and pipe["max_abs_diff_vs_mlb"] < 1e-4  # PyTorch fp32 vs the fp32 file
    assert results["stack"]["mlbert"]["from"] == os.path.dirname(mlbert.__file__)  # the installed package
    assert results["commands"] == sysconfig.get_path("scripts")  # where mlb-batch etc. were run from
    assert "CPUExecutionProvider" in results["stack"]["onnxruntime_providers"]
    page = (out / "results.md").read_text()
    assert "## Targets" in page and "## Training" in page and "| pipeline-4 | ok |" in page


def test_the_check_needs_the_project_installed(tmp_path, monkeypatch, capsys):
    """It runs the installed commands, never the working tree: without them it stops with one line."""
    monkeypatch.setattr(runner.sysconfig, "get_path", lambda name: str(tmp_path / "bin"))
    code = check.main(["run", "--cpu", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"Error: mlb-train, mlb-export, mlb-batch not found in {tmp_path / 'bin'}: install")
    assert not (tmp_path / "out").exists()


def test_a_failed_step_skips_what_needs_it(tmp_path):
    chk = runner.Check(runner.CPU, out=tmp_path, work=tmp_path)

    def broken():
        raise runner.StepError("mlb-train exited 2: Error: no such file")

    assert chk.step("train-accel", [], 0, broken) is None
    assert chk.step("export-fp32", ["train-accel"], 0, lambda: 1) is None
    steps = json.loads((tmp_path / "results.json").read_text())["steps"]
    assert steps[0] == {"name": "train-accel", "status": "failed", "error": "mlb-train exited 2: Error: no such file",
                        "seconds": steps[0]["seconds"]}
    assert steps[1]["status"] == "skipped" and steps[1]["error"] == "needs train-accel"


def test_when_gpu_training_fails_the_inference_half_runs_on_the_cpu_checkpoint(tmp_path, monkeypatch):
    calls = []

    def fake(name):
        def step(chk, *args, **kwargs):
            calls.append((name, [a.name if isinstance(a, Path) else a for a in args]))
            if name == "train" and args[0] == "cuda":
                raise runner.StepError("mlb-train exited 1: Error: CUDA error")
            return {}
        return step

    for name in ("train", "export", "classify", "score", "agreement", "pipeline_run", "make_data", "cuda_provider"):
        monkeypatch.setattr(check, name, fake(name))
    monkeypatch.setattr(runner.Check, "worker", lambda self, name, **kw: {})
    chk = runner.Check(runner.GPU, out=tmp_path, work=tmp_path)
    check.run_steps(chk)
    trained = [args for name, args in calls if name == "train"]
    assert trained[:2] == [["cuda", "train-accel", 400], ["cpu", "train-cpu", 400]] and len(trained) == 3  # + 2 CPUs
    assert [args for name, args in calls if name == "export"] == [["train-cpu", "model.fp32.onnx", False],
                                                                  ["train-cpu", "model.fp16.onnx", True]]
    assert [s["name"] for s in chk.results["steps"]][-1] == "pipeline-64"  # train-cpu already ran, not again
    assert chk.status("train-accel") == "failed" and chk.status("pipeline-256") == "ok"


def test_no_step_starts_past_the_time_budget(tmp_path):
    settings = dataclasses.replace(runner.CPU, budget_s=10)
    chk = runner.Check(settings, out=tmp_path, work=tmp_path)
    assert chk.step("train-cpu", [], 60, lambda: 1) is None
    assert chk.status("train-cpu") == "skipped"


def test_without_a_usable_cuda_provider_the_check_retries_with_the_library_path_and_says_why(tmp_path):
    chk = runner.Check(runner.GPU, out=tmp_path, work=tmp_path)
    with pytest.raises(runner.StepError, match=r"worker provider exited 1: .*--device cuda"):
        measure.cuda_provider(chk)
    assert "LD_LIBRARY_PATH" in chk.env  # the second try had torch's CUDA libraries on the path


# --------------------------------------------------------------------------- a GPU box without internet


def _box_steps() -> List[str]:
    """The commands docs/GPU.md gives for the box, in order."""
    doc = (ROOT / "docs" / "GPU.md").read_text(encoding="utf-8")
    block = doc.split("<!-- box-steps:start -->")[1].split("<!-- box-steps:end -->")[0]
    return [line for line in block.splitlines() if line.strip() and not line.startswith("```")]


def test_the_wheelhouse_travels_in_parts_and_installs_without_an_index(tmp_path):
    """The offline route as far as it runs without an index: wheelhouse.sh builds the project's wheel from the
    repository's files and packs it with the source, split with checksums; docs/GPU.md's commands on the box, as
    written, refuse a damaged part naming it, join and unpack the parts, and pip installs the wheel with
    ``--no-index --find-links wheelhouse`` into a fresh environment whose ``mlb-batch`` then classifies."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PYTHON=sys.executable, PIP_NO_INDEX="1", PIP_CONFIG_FILE=os.devnull)  # offline, no local pip config
    made = tmp_path / "made"
    script = [str(GPU_CHECK / "wheelhouse.sh"), "--project-only", "--no-build-isolation", "--split", "1M", str(made)]
    done = subprocess.run(script, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    parts = sorted(made.glob("wheelhouse.tar.part-*"))
    assert len(parts) >= 2 and (made / "wheelhouse.tar").stat().st_size == sum(p.stat().st_size for p in parts)
    assert [line.split()[1] for line in (made / "SHA256SUMS").read_text().splitlines()] == \
        [p.name for p in parts] + ["wheelhouse.tar"]
    steps = _box_steps()
    assert steps == ["cat wheelhouse.tar.part-* > wheelhouse.tar", "sha256sum -c SHA256SUMS", "tar -xf wheelhouse.tar",
                     "python3 -m venv .venv",
                     ".venv/bin/pip install --no-index --find-links wheelhouse 'mlbert[all,cuda]'"]
    box = tmp_path / "box"
    box.mkdir()
    for path in parts + [made / "SHA256SUMS"]:  # only what travels
        shutil.copy(path, box)
    damaged = box / parts[1].name
    damaged.write_bytes(damaged.read_bytes()[:-1] + bytes([damaged.read_bytes()[-1] ^ 0xFF]))
    refused = subprocess.run(" && ".join(steps[:2]), shell=True, cwd=box, capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and f"{parts[1].name}: FAILED" in refused.stdout.splitlines()
    shutil.copy(parts[1], box)  # sent again
    # The same Python minor as this one (python3 on the box), and only mlbert's wheel in this wheelhouse: --no-deps.
    steps[3] = f"{sys.executable} -m venv .venv"
    steps[4] = ".venv/bin/pip install -q --no-index --find-links wheelhouse --no-deps mlbert"
    for step in steps:
        ran = subprocess.run(step, shell=True, cwd=box, capture_output=True, text=True, env=env, timeout=300)
        assert ran.returncode == 0, (step, ran.stdout, ran.stderr)
    assert (box / "mlbert-src" / "benchmarks" / "gpu" / "check.py").is_file() and (box / "mlbert-src" / "data").is_dir()
    # The dependencies from this environment, behind the fresh one's own site-packages (a plain path entry).
    python, bin_dir = box / ".venv" / "bin" / "python", box / ".venv" / "bin"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "dependencies-from-the-test.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = subprocess.run([str(python), "-c", "import mlbert.batch.cli as m; print(m.__file__)"],
                           cwd=box, capture_output=True, text=True, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stderr
    classified = subprocess.run([str(bin_dir / "mlb-batch"), "-", "-m", "mlbert-src/tests/fixtures/golden.onnx"],
                                input="I am so happy\n", cwd=box, capture_output=True, text=True, env=env)
    assert classified.returncode == 0, classified.stderr
    assert [sorted(json.loads(line)) for line in classified.stdout.splitlines()] == [["labels", "row", "scores"]]


# --------------------------------------------------------------------------- report


def test_targets_read_the_measured_figures():
    scores = {"samples_jaccard": 0.5, "micro_f1": 0.6, "macro_f1": 0.4}
    results = {"batch": {"fp16": {"rows_per_second": 30_000}},
               "pipeline": {"256": {"rows_per_second": 6000}, "64": {"rows_per_second": 5000}},
               "train_accelerator": {"step_seconds": 0.01, "test": {**scores, "macro_f1": 0.39}},
               "train_cpu": {"test": scores}, "train_cpu2": {"step_seconds": 0.15}}
    (pipe, rows, train, same) = report.targets(results)
    assert pipe[1:] == ("5.0x", "yes") and rows[1:] == ("30,000 rows/s", "yes") and train[1:] == ("15.0x", "NO")
    assert same[1:] == ("+0.00 / +0.00 / -1.00", "info")
    assert [t[1:] for t in report.targets({})] == [("-", "-")] * 3 + [("-", "info")]


# --------------------------------------------------------------------------- CUDA paths checkable on a CPU


@pytest.mark.parametrize("bf16", [True, False])
def test_device_settings_pick_bf16_where_the_gpu_has_it(monkeypatch, bf16):
    import torch

    from mlbert.trainer.hf_trainer import device_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    for device in ("auto", "cuda"):
        assert device_settings(device) == {"use_cpu": False, "bf16": bf16, "fp16": not bf16, "device_name": "NVIDIA H200"}
    assert device_settings("cpu")["use_cpu"] is True and device_settings("cpu")["bf16"] is False


def test_cuda_gets_its_own_token_budget():
    from mlbert.runtime.bucketing import DEFAULT_TOKEN_BUDGET_CPU, DEFAULT_TOKEN_BUDGET_CUDA
    from mlbert.runtime.providers import default_token_budget, provider_for

    assert default_token_budget("CUDAExecutionProvider", 128) == DEFAULT_TOKEN_BUDGET_CUDA
    assert default_token_budget("CPUExecutionProvider", 128) == DEFAULT_TOKEN_BUDGET_CPU
    assert provider_for("cuda").full_warm_up and "mlbert[cuda]" in provider_for("cuda").needs


def test_a_partial_cuda_install_never_writes_into_the_records_on_stdout(golden_model, tmp_path):
    """onnxruntime.preload_dlls print()s each CUDA library it cannot load; with some nvidia-* package present
    (say torch's CUDA 12 wheels beside onnxruntime-gpu for CUDA 13) that went to stdout, into mlb-batch's JSONL."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers() or not hasattr(ort, "preload_dlls"):
        pytest.skip("needs onnxruntime-gpu, whose CUDA provider preloads the nvidia-* libraries")
    (tmp_path / "nvidia").mkdir()  # an nvidia namespace without the libraries onnxruntime wants
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "mlbert.batch", "-", "-m", str(golden_model), "--device", "auto"],
                          input="I am so happy\n", capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert [sorted(json.loads(line)) for line in done.stdout.splitlines()] == [["labels", "row", "scores"]]


def test_only_hub_datasets_import_datasets():
    """A GPU box need not have ``datasets``: training on files must not import it (hub datasets do, in hub_data.py)."""
    importers = set()
    for path in (ROOT / "trainer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "datasets" or n.startswith("datasets.") for n in names):
                importers.add(path.name)
    assert importers == {"hub_data.py"}


def test_file_training_rows_are_plain_feature_dicts():
    """mlb-train on files hands the Trainer a list of dicts: no ``datasets`` needed."""
    from conftest import build_tiny_tokenizer
    from mlbert.trainer.hf_trainer import tokenized_dataset

    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    rows = tokenized_dataset(build_tiny_tokenizer(), ["so happy", "sad", "i am so very glad today"], labels, 5)
    assert [sorted(r) for r in rows] == [["attention_mask", "input_ids", "labels", "token_type_ids"]] * 3
    assert [len(r["input_ids"]) for r in rows] == [4, 3, 5]  # unpadded, truncated at max_length
    assert [r["labels"] for r in rows] == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


# --------------------------------------------------------------------------- the check's own code


@pytest.mark.parametrize("path", sorted(GPU_CHECK.glob("*.py")), ids=lambda p: p.name)
def test_the_check_keeps_the_projects_size_rules(path):
    """benchmarks/gpu/ follows the product's rules (tests/test_layout.py): small modules, short functions."""
    from test_layout import MAX_FUNCTION_LINES, MAX_MODULE_LINES, REASON

    text = path.read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES
    long = [f"{node.name} ({node.end_lineno - node.lineno + 1} lines)" for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES and REASON not in (ast.get_docstring(node) or "")]
    assert not long, long
