"""``mlb-batch --engine ray`` on a local 2-CPU Ray instance: the same bytes as the local engine.

Ray starts once for the module (a few seconds) and is shut down at its end.
"""

import csv
import json
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("ray.data")

from mlbert.batch.cli import cli  # noqa: E402
from mlbert.batch.errors import MlbError, UsageError  # noqa: E402
from mlbert.batch.pipeline import BatchOptions  # noqa: E402
from mlbert.batch.ray_engine import RayBatchJob, RayOptions, _ray  # noqa: E402

WORDS = "i am so happy sad angry glad love hate it this the not very what wow oh no yes great terrible awful day".split()


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


def run(args, model):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["-m", str(model)], catch_exceptions=False)


def _text(i: int) -> str:
    # Varied lengths so the chunks bucket into several padded lengths.
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + (i * 13) % 40))


@pytest.fixture
def jsonl_with_bad_rows(tmp_path):
    lines = []
    for i in range(40):
        if i == 3:
            lines.append("{broken json")
        elif i == 8:
            lines.append(json.dumps({"id": i, "text": "   "}))
        elif i == 9:
            lines.append(json.dumps({"id": i, "text": None}))
        elif i == 17:
            lines.append(json.dumps({"id": i, "text": ["not", "text"]}))
        else:
            lines.append(json.dumps({"id": i, "text": _text(i)}))
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("chunk", [7, 4096])
def test_ray_output_is_byte_identical_to_local_including_bad_rows(jsonl_with_bad_rows, tmp_path, varied_onnx, chunk):
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    first = run([jsonl_with_bad_rows, "-o", local, "--chunk-size", chunk], varied_onnx)
    second = run([jsonl_with_bad_rows, "-o", ray_out, "--chunk-size", chunk, "--engine", "ray",
                  "--ray-concurrency", "2"], varied_onnx)
    assert first.exit_code == second.exit_code == 3, second.stderr
    assert ray_out.read_bytes() == local.read_bytes()
    recs = [json.loads(line) for line in ray_out.read_text().splitlines()]
    assert len(recs) == 40 and [r["id"] if "id" in r else None for r in recs][:3] == [0, 1, 2]
    assert [r["row"] for r in recs if "error" in r] == [4, 9, 10, 18]
    assert "ray (2 actors, CPUExecutionProvider)" in second.stderr


def test_ray_csv_with_ragged_rows_and_batch_size(tmp_path, varied_onnx):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(25):
            writer.writerow([f"r{i}", _text(i)] + (["extra"] if i == 5 else []))
    local, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert run([path, "-o", local, "--chunk-size", "4", "--top-k", "2"], varied_onnx).exit_code == 3
    result = run([path, "-o", ray_out, "--engine", "ray", "--ray-batch-size", "4", "--top-k", "2"], varied_onnx)
    assert result.exit_code == 3, result.stderr
    assert ray_out.read_bytes() == local.read_bytes()
    assert len(ray_out.read_text().splitlines()) == 26


def test_ray_inbox_runs_then_skips(tmp_path, jsonl_with_bad_rows, varied_onnx):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "one.jsonl").write_bytes(jsonl_with_bad_rows.read_bytes())
    (inbox / "two.txt").write_text("\n".join(_text(i) for i in range(30)) + "\n")
    out = tmp_path / "out"
    first = run([inbox, "-o", f"{out}/", "--engine", "ray"], varied_onnx)
    assert first.exit_code == 3 and "2 files: 2 written" in first.stderr, first.stderr
    local = run([inbox, "-o", f"{tmp_path}/local/"], varied_onnx)
    assert local.exit_code == 3
    for name in ("one.jsonl", "two.jsonl"):
        assert (out / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    again = run([inbox, "-o", f"{out}/", "--engine", "ray"], varied_onnx)
    assert again.exit_code == 0 and "0 written, 2 already done" in again.stderr


def test_ray_resume_after_a_stop_is_byte_identical(jsonl_with_bad_rows, tmp_path, varied_onnx):
    full = tmp_path / "full.jsonl"
    assert run([jsonl_with_bad_rows, "-o", full, "--chunk-size", "5"], varied_onnx).exit_code == 3
    out = tmp_path / "out.jsonl"

    def stop(chunk_index):
        if chunk_index == 3:
            raise KeyboardInterrupt

    options = BatchOptions(input=str(jsonl_with_bad_rows), output=str(out), model=str(varied_onnx), chunk_size=5)
    job = RayBatchJob(options, RayOptions(concurrency=2))
    job.prepare()
    with pytest.raises(KeyboardInterrupt):
        job.run(after_chunk=stop)
    assert not out.exists() and (tmp_path / "out.jsonl.progress").exists()
    resumed = RayBatchJob(BatchOptions(input=str(jsonl_with_bad_rows), output=str(out), model=str(varied_onnx),
                                       chunk_size=5, resume=True), RayOptions(concurrency=2))
    resumed.prepare()
    summary = resumed.run()
    assert summary.resumed_from == 15 and summary.rows == 40 and summary.errors == 4
    assert out.read_bytes() == full.read_bytes()


def test_ray_errors_are_one_line(tmp_path, jsonl_with_bad_rows, varied_onnx, monkeypatch):
    result = run([jsonl_with_bad_rows, "-o", tmp_path / "x.jsonl", "--engine", "ray", "--device", "cuda"], varied_onnx)
    assert result.exit_code == 1 and result.stderr.startswith("Error: --device cuda: the Ray cluster has no GPU")
    result = run([jsonl_with_bad_rows, "--ray-concurrency", "2"], varied_onnx)
    assert result.exit_code == 2 and "--ray-concurrency need --engine ray" in result.stderr
    with pytest.raises(MlbError):
        RayBatchJob(BatchOptions(input="x"), RayOptions(batch_size=0))
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'mlbert\[ray\]'"):
        _ray()
