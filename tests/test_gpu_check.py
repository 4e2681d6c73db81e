"""The GPU check (scripts/gpu_check.py) without a GPU: its CPU half end to end, the parts that
carry what the GPU machine lacks, and the CUDA code paths that can be checked on a CPU."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import gpu_check  # noqa: E402
import gpu_env  # noqa: E402
import gpu_parts  # noqa: E402
import gpu_prepare  # noqa: E402
import gpu_report  # noqa: E402
import gpu_run  # noqa: E402


# --------------------------------------------------------------------------- the CPU half, end to end


def test_cpu_half_runs_every_step(tiny_checkpoint, tmp_path):
    """What CI keeps working: train, export, classify, compare with the CPU, the pipeline, the results page."""
    out = tmp_path / "out"
    code = gpu_check.main(["run", "--cpu", "--in-process", "--base-model", str(tiny_checkpoint), "--out", str(out),
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
    assert results["stack"]["mlbert"]["from"].startswith(str(out / "work" / "src")) or \
        results["stack"]["mlbert"]["from"] == str(gpu_env.REPO / "mlbert")  # in-process: the test's own import
    assert "CPUExecutionProvider" in results["stack"]["onnxruntime_providers"]
    page = (out / "results.md").read_text()
    assert "## Targets" in page and "## Training" in page and "| pipeline-4 | ok |" in page


def test_a_failed_step_skips_what_needs_it(tmp_path):
    check = gpu_run.Check(gpu_run.CPU, out=tmp_path, work=tmp_path)

    def broken():
        raise gpu_run.StepError("mlb-train exited 2: Error: no such file")

    assert check.step("train-accel", [], 0, broken) is None
    assert check.step("export-fp32", ["train-accel"], 0, lambda: 1) is None
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
                raise gpu_run.StepError("mlb-train exited 1: Error: CUDA error")
            return {}
        return step

    for name in ("train", "export", "classify", "score", "agreement", "pipeline_run", "make_data", "cuda_provider"):
        monkeypatch.setattr(gpu_check, name, fake(name))
    monkeypatch.setattr(gpu_run.Check, "worker", lambda self, name, **kw: {})
    check = gpu_run.Check(gpu_run.GPU, out=tmp_path, work=tmp_path)
    gpu_check.run_steps(check)
    trained = [args for name, args in calls if name == "train"]
    assert trained[:2] == [["cuda", "train-accel", 400], ["cpu", "train-cpu", 400]] and len(trained) == 3  # + 2 CPUs
    assert [args for name, args in calls if name == "export"] == [["train-cpu", "model.fp32.onnx", False],
                                                                  ["train-cpu", "model.fp16.onnx", True]]
    assert [s["name"] for s in check.results["steps"]][-1] == "pipeline-64"  # train-cpu already ran, not again
    assert check.status("train-accel") == "failed" and check.status("pipeline-256") == "ok"


def test_no_step_starts_past_the_time_budget(tmp_path):
    settings = dataclasses.replace(gpu_run.CPU, budget_s=10)
    check = gpu_run.Check(settings, out=tmp_path, work=tmp_path)
    assert check.step("train-cpu", [], 60, lambda: 1) is None
    assert check.status("train-cpu") == "skipped"


def test_without_a_usable_cuda_provider_the_check_retries_with_the_library_path_and_says_why(tmp_path):
    import gpu_measure

    check = gpu_run.Check(gpu_run.GPU, out=tmp_path, work=tmp_path)
    with pytest.raises(gpu_run.StepError, match=r"worker provider exited 1: .*--device cuda"):
        gpu_measure.cuda_provider(check)
    assert "LD_LIBRARY_PATH" in check.env  # the second try had torch's CUDA libraries on the path


def test_launchers_run_the_working_tree_without_an_install(tmp_path):
    """On the GPU machine nothing is pip-installed: links mirror setup.cfg's package_dir, launchers its console scripts."""
    shim = gpu_env.package_links(gpu_env.REPO, tmp_path / "src")
    assert (shim / "mlbert" / "batch").resolve() == (gpu_env.REPO / "batch").resolve()
    launchers = gpu_env.write_launchers(gpu_env.REPO, tmp_path / "bin")
    assert set(launchers) == {"mlb-train", "mlb-export", "mlb-batch", "mlb-eval"}
    env = {**os.environ, "PYTHONPATH": str(shim)}
    done = subprocess.run([str(launchers["mlb-batch"]), "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and "mlb-batch" in done.stdout
    where = subprocess.run([sys.executable, "-c", "import mlbert.batch.cli as m; print(m.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path)
    assert where.stdout.strip().startswith(str(shim))


# --------------------------------------------------------------------------- parts, checksums, join


def _bundle(folder: Path) -> Path:
    """A small .tar.xz shaped like the real bundle."""
    path = folder / "bundle.tar.xz"
    with tarfile.open(path, "w:xz") as tar:
        for name, data in (("site/pkg/__init__.py", b"X = 1\n"), ("contents.json", b"{}"),
                           ("model/weights.bin", os.urandom(5000))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_parts_travel_one_per_folder_and_join_to_the_same_bytes(tmp_path):
    bundle = _bundle(tmp_path)
    manifest = gpu_parts.split_file(bundle, tmp_path / "transfer", 2000)
    count = len(manifest["parts"])
    assert count == -(-bundle.stat().st_size // 2000) >= 2
    stash = tmp_path / "stash"
    for index in range(1, count + 1):
        folder = tmp_path / "transfer" / str(index)
        assert sorted(p.name for p in folder.iterdir()) == sorted([gpu_parts.MANIFEST, f"part-{index}-of-{count}"])
        missing = gpu_parts.receive(folder, stash)
        assert missing == [f"part-{i}-of-{count}" for i in range(index + 1, count + 1)]
    (found,) = gpu_parts.stashed_manifests(stash)
    joined = gpu_parts.join(found, gpu_parts.stash_folder(found, stash), tmp_path / "joined.tar.xz")
    assert joined.read_bytes() == bundle.read_bytes()
    root = gpu_parts.unpack(joined, tmp_path / "unpacked")
    assert (root / "site" / "pkg" / "__init__.py").read_text() == "X = 1\n"


def test_the_last_call_installs_the_received_bundle_once(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_parts, "STASH", tmp_path / "stash")
    monkeypatch.setattr(gpu_check, "BUNDLE_HOME", tmp_path / "home")
    monkeypatch.setattr(sys, "path", list(sys.path))
    gpu_parts.split_file(_bundle(tmp_path), tmp_path / "transfer", 2000)
    for folder in sorted((tmp_path / "transfer").iterdir()):
        gpu_parts.receive(folder)
    check = gpu_run.Check(gpu_run.GPU, out=tmp_path / "out", work=tmp_path / "work")
    found = gpu_check.install_bundle(check)
    site = tmp_path / "home" / "bundle" / "site"
    assert found["bundle"] == "bundle.tar.xz" and found["contents"] == {}
    assert check.env["PYTHONPATH"] == str(site) and str(site) in sys.path
    assert check.base_model == str(tmp_path / "home" / "bundle" / "model")
    (tmp_path / "home" / "bundle.tar.xz").unlink()  # a second run on the same machine does not join again
    assert gpu_check.install_bundle(gpu_run.Check(gpu_run.GPU, out=tmp_path, work=tmp_path))["bundle"] == "bundle.tar.xz"
    assert not (tmp_path / "home" / "bundle.tar.xz").exists()


def test_a_corrupted_part_is_refused_with_one_line(tmp_path):
    bundle = _bundle(tmp_path)
    gpu_parts.split_file(bundle, tmp_path / "transfer", 2000)
    part = tmp_path / "transfer" / "2" / next(p.name for p in (tmp_path / "transfer" / "2").glob("part-*"))
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    done = subprocess.run([sys.executable, str(SCRIPTS / "gpu_check.py"), "receive", str(part.parent)],
                          capture_output=True, text=True, env={**os.environ, "MLB_GPU_STASH": str(tmp_path / "stash")})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"Error: {part.name}: sha256 does not match the manifest (damaged in transfer): "
                                        "send that call again"]
    assert part.exists() and not list((tmp_path / "stash").rglob("part-*"))  # refused parts stay out of the stash


def test_a_missing_part_stops_the_join_naming_it(tmp_path):
    bundle = _bundle(tmp_path)
    manifest = gpu_parts.split_file(bundle, tmp_path / "transfer", 2000)
    stash = tmp_path / "stash"
    gpu_parts.receive(tmp_path / "transfer" / "1", stash)
    with pytest.raises(gpu_parts.PartError, match=r"parts missing here \(part-2-of-"):
        gpu_parts.join(manifest, gpu_parts.stash_folder(manifest, stash), tmp_path / "joined")


def test_a_truncated_part_is_refused(tmp_path):
    bundle = _bundle(tmp_path)
    manifest = gpu_parts.split_file(bundle, tmp_path / "transfer", 2000)
    part = tmp_path / "transfer" / "1" / manifest["parts"][0]["name"]
    part.write_bytes(part.read_bytes()[:-1])
    with pytest.raises(gpu_parts.PartError, match="1999 bytes, the manifest says 2000"):
        gpu_parts.receive(part.parent, tmp_path / "stash")


def test_unpack_refuses_a_member_outside_the_folder(tmp_path):
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(gpu_parts.PartError, match="would land outside"):
        gpu_parts.unpack(path, tmp_path / "in")
    assert not (tmp_path / "outside.txt").exists()


# --------------------------------------------------------------------------- the preparation here


def test_the_calls_fit_the_device_tool(tmp_path):
    calls = gpu_prepare.device_calls(gpu_prepare.HOME / "transfer", 4)
    assert [c["carry"] for c in calls] == [[f"runs/gpu/transfer/{i}"] for i in range(1, 5)]
    assert calls[0]["command"] == "python3 scripts/gpu_check.py receive runs/gpu/transfer/1 --probe"
    assert calls[-1]["command"].endswith("&& PYTHONUNBUFFERED=1 python3 scripts/gpu_check.py run --gpu")
    assert calls[-1]["timeout_s"] == 600 and all(len(c["command"]) < 2000 for c in calls)
    tree = gpu_prepare.tree_bytes()
    assert 0 < tree < 16 * gpu_prepare.MiB
    assert gpu_prepare.part_size(tree, None) + tree + gpu_prepare.MARGIN <= gpu_prepare.CALL_LIMIT
    with pytest.raises(SystemExit, match="do not fit"):
        gpu_prepare.part_size(tree, 64)


def test_halved_weights_keep_their_values_within_float16_rounding(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = tmp_path / "model.safetensors"
    weights = np.random.default_rng(0).normal(0, 0.05, (64, 32)).astype(np.float32)
    save_file({"w": weights, "ids": np.arange(4, dtype=np.int64)}, str(path))
    facts = gpu_prepare.halve_weights(path)
    loaded = load_file(str(path))
    assert loaded["w"].dtype == np.float16 and loaded["ids"].dtype == np.int64
    assert facts["largest_rounding_error"] <= np.abs(weights).max() * 2**-11
    save_file({"w": np.array([70000.0], dtype=np.float32)}, str(path))
    with pytest.raises(SystemExit, match="does not fit float16"):
        gpu_prepare.halve_weights(path)


# --------------------------------------------------------------------------- report


def test_targets_read_the_measured_figures():
    scores = {"samples_jaccard": 0.5, "micro_f1": 0.6, "macro_f1": 0.4}
    results = {"batch": {"fp16": {"rows_per_second": 30_000}},
               "pipeline": {"256": {"rows_per_second": 6000}, "64": {"rows_per_second": 5000}},
               "train_accelerator": {"step_seconds": 0.01, "test": {**scores, "macro_f1": 0.39}},
               "train_cpu": {"test": scores}, "train_cpu2": {"step_seconds": 0.15}}
    (pipe, rows, train, same) = gpu_report.targets(results)
    assert pipe[1:] == ("5.0x", "yes") and rows[1:] == ("30,000 rows/s", "yes") and train[1:] == ("15.0x", "NO")
    assert same[1:] == ("+0.00 / +0.00 / -1.00", "info")
    assert [t[1:] for t in gpu_report.targets({})] == [("-", "-")] * 3 + [("-", "info")]


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
    """The GPU machine has no ``datasets``: training on files must not import it (hub datasets do, in hub_data.py)."""
    import ast

    importers = set()
    for path in (gpu_env.REPO / "trainer").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "datasets" or n.startswith("datasets.") for n in names):
                importers.add(path.name)
    assert importers == {"hub_data.py"}


def test_file_training_rows_are_plain_feature_dicts():
    """mlb-train on files hands the Trainer a list of dicts: no ``datasets`` needed (the GPU machine has none)."""
    from conftest import build_tiny_tokenizer
    from mlbert.trainer.hf_trainer import tokenized_dataset

    labels = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)
    rows = tokenized_dataset(build_tiny_tokenizer(), ["so happy", "sad", "i am so very glad today"], labels, 5)
    assert [sorted(r) for r in rows] == [["attention_mask", "input_ids", "labels", "token_type_ids"]] * 3
    assert [len(r["input_ids"]) for r in rows] == [4, 3, 5]  # unpadded, truncated at max_length
    assert [r["labels"] for r in rows] == [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]
