"""``mlb-batch --engine ray`` on a local 2-CPU Ray instance: the same bytes as the local engine.

Ray starts once for the module (a few seconds) and is shut down at its end. Comparisons use
the int8 model, whose scores change with the grouping of rows into batches, so "the same
bytes for the same chunking" is a real check. A lost node on a 2-node cluster is in
tests/test_ray_cluster.py.
"""

import csv
import json
import os
import re
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("ray")

from mlbert.batch.cli import cli  # noqa: E402
from mlbert.errors import MlbError, UsageError  # noqa: E402
from mlbert.batch.job import BatchOptions  # noqa: E402
from mlbert.batch.ray.cluster import ray_module  # noqa: E402
from mlbert.batch.ray.engine import RayBatchJob, RayOptions, default_batch_size  # noqa: E402

WORDS = "i am so happy sad angry glad love hate it this the not very what wow oh no yes great terrible awful day".split()


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture
def make_job():
    """RayBatchJob(...), whose actors are stopped after the test so the next test's actors get the CPUs."""
    jobs = []

    def make(options, ray_options):
        jobs.append(RayBatchJob(options, ray_options))
        return jobs[-1]

    yield make
    for job in jobs:
        job.close()


def run(args, model):
    return CliRunner().invoke(cli, [str(a) for a in args] + ["-m", str(model)], catch_exceptions=False)


def _text(i: int) -> str:
    # Varied lengths so the chunks bucket into several padded lengths.
    return " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + (i * 13) % 40))


def batch_and_actors(stderr: str):
    """(rows per batch, {actor: rows scored}) from the summary line."""
    found = re.search(r"ray \(CPUExecutionProvider, (\d+)-row batches(?:; \d+ actors? scored rows: ([^)]*))?\)", stderr)
    assert found, stderr
    actors = {}
    for item in (found.group(2) or "").split(", "):
        if item:
            label, _, rows = item.rpartition(" ")
            actors[label] = int(rows)
    return int(found.group(1)), actors


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


@pytest.fixture
def plain_texts(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(_text(i) for i in range(1000)) + "\n", encoding="utf-8")
    return path


def test_ray_and_local_agree_on_a_csv_with_broken_quotes_and_gzip(tmp_path, varied_int8_onnx):
    """Both engines read through the same readers: same records, same error rows, same counts, same bytes."""
    lines = ["id,text"] + [f"{i},{_text(i)}" for i in range(60)]
    lines[12] = '11,"a quote that never closes'
    source = tmp_path / "in.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    local, ray_out = tmp_path / "local.jsonl.gz", tmp_path / "ray.jsonl.gz"
    first = run([source, "-o", local, "--chunk-size", "9"], varied_int8_onnx)
    second = run([source, "-o", ray_out, "--chunk-size", "9", "--engine", "ray", "--ray-concurrency", "2"],
                 varied_int8_onnx)
    assert first.exit_code == second.exit_code == 3, second.stderr
    assert ray_out.read_bytes() == local.read_bytes()
    assert "60 rows read, 60 records written" in first.stderr and "60 rows read, 60 records written" in second.stderr


def test_ray_output_is_byte_identical_to_local_including_bad_rows(jsonl_with_bad_rows, tmp_path, varied_int8_onnx):
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    first = run([jsonl_with_bad_rows, "-o", local, "--chunk-size", "7"], varied_int8_onnx)
    second = run([jsonl_with_bad_rows, "-o", ray_out, "--chunk-size", "7", "--engine", "ray",
                  "--ray-concurrency", "2"], varied_int8_onnx)
    assert first.exit_code == second.exit_code == 3, second.stderr
    assert ray_out.read_bytes() == local.read_bytes()
    recs = [json.loads(line) for line in ray_out.read_text().splitlines()]
    assert len(recs) == 40 and [r["id"] if "id" in r else None for r in recs][:3] == [0, 1, 2]
    assert [r["row"] for r in recs if "error" in r] == [4, 9, 10, 18]
    batch, actors = batch_and_actors(second.stderr)
    assert batch == 7 and len(actors) == 2 and sum(actors.values()) == 36


def test_default_batch_gives_every_actor_work_and_names_the_local_chunk_size(plain_texts, tmp_path, varied_int8_onnx):
    ray_out, local, local_default = tmp_path / "ray.jsonl", tmp_path / "local.jsonl", tmp_path / "default.jsonl"
    result = run([plain_texts, "-o", ray_out, "--engine", "ray", "--ray-concurrency", "2"], varied_int8_onnx)
    assert result.exit_code == 0, result.stderr
    batch, actors = batch_and_actors(result.stderr)
    assert batch == default_batch_size(1000, 2, 4096) == 125
    assert len(actors) == 2 and all(rows >= 125 for rows in actors.values()) and sum(actors.values()) == 1000
    assert run([plain_texts, "-o", local, "--chunk-size", batch], varied_int8_onnx).exit_code == 0
    assert ray_out.read_bytes() == local.read_bytes()
    # The docs' point: another chunking gives an int8 model other scores.
    assert run([plain_texts, "-o", local_default], varied_int8_onnx).exit_code == 0
    assert local_default.read_bytes() != ray_out.read_bytes()


def test_default_batch_size_rule():
    assert default_batch_size(3259, 2, 4096) == 408  # the file: 8 calls for 2 actors, not 1
    assert default_batch_size(10_000_000, 2, 4096) == 4096
    assert default_batch_size(40, 2, 4096) == 64 and default_batch_size(40, 2, 16) == 16
    assert default_batch_size(None, 2, 4096) == 4096


def test_ray_csv_with_ragged_rows_and_batch_size(tmp_path, varied_int8_onnx):
    path = tmp_path / "in.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text"])
        for i in range(25):
            writer.writerow([f"r{i}", _text(i)] + (["extra"] if i == 5 else []))
    local, ray_out = tmp_path / "local.csv", tmp_path / "ray.csv"
    assert run([path, "-o", local, "--chunk-size", "4", "--top-k", "2"], varied_int8_onnx).exit_code == 3
    result = run([path, "-o", ray_out, "--engine", "ray", "--ray-batch-size", "4", "--top-k", "2"], varied_int8_onnx)
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


def _stop_at(chunk: int):
    def stop(chunk_index):
        if chunk_index == chunk:
            raise KeyboardInterrupt
    return stop


def test_ray_resume_after_a_stop_is_byte_identical(jsonl_with_bad_rows, tmp_path, varied_int8_onnx, make_job):
    full = tmp_path / "full.jsonl"
    assert run([jsonl_with_bad_rows, "-o", full, "--chunk-size", "5"], varied_int8_onnx).exit_code == 3
    out = tmp_path / "out.jsonl"
    options = BatchOptions(input=str(jsonl_with_bad_rows), output=str(out), model=str(varied_int8_onnx), chunk_size=5)
    job = make_job(options, RayOptions(concurrency=2))
    job.prepare()
    with pytest.raises(KeyboardInterrupt):
        job.run(after_chunk=_stop_at(3))
    job.close()
    assert not out.exists() and (tmp_path / "out.jsonl.progress").exists()
    resumed = make_job(BatchOptions(input=str(jsonl_with_bad_rows), output=str(out), model=str(varied_int8_onnx),
                                    chunk_size=5, resume=True), RayOptions(concurrency=2))
    resumed.prepare()
    summary = resumed.run()
    assert summary.resumed_from == 15 and summary.rows == 40 and summary.errors == 4
    assert out.read_bytes() == full.read_bytes()


def test_resume_keeps_the_interrupted_runs_batch_size_when_the_pool_changed(plain_texts, tmp_path, varied_int8_onnx,
                                                                            make_job):
    """After a lost node the pool is smaller; a default batch sized for it would differ and start over."""
    out, full = tmp_path / "out.jsonl", tmp_path / "full.jsonl"
    options = BatchOptions(input=str(plain_texts), output=str(out), model=str(varied_int8_onnx))
    job = make_job(options, RayOptions(concurrency=2))
    job.prepare()
    with pytest.raises(KeyboardInterrupt):
        job.run(after_chunk=_stop_at(2))
    job.close()
    assert options.chunk_size == 125
    resumed = make_job(BatchOptions(input=str(plain_texts), output=str(out), model=str(varied_int8_onnx),
                                    resume=True), RayOptions(concurrency=1))
    resumed.prepare()
    summary = resumed.run()
    assert summary.resumed_from == 250 and summary.rows == 1000
    assert run([plain_texts, "-o", full, "--chunk-size", "125"], varied_int8_onnx).exit_code == 0
    assert out.read_bytes() == full.read_bytes()


def test_a_killed_actor_costs_only_its_chunk(plain_texts, tmp_path, varied_int8_onnx, make_job):
    """An actor killed mid-run: its chunk is scored again by another actor; same bytes, one note."""
    import ray

    out, full = tmp_path / "out.jsonl", tmp_path / "full.jsonl"
    job = make_job(BatchOptions(input=str(plain_texts), output=str(out), model=str(varied_int8_onnx)),
                      RayOptions(concurrency=2, batch_size=20))
    job.prepare()
    killed = []

    def kill_a_busy_actor(chunk_index):
        if chunk_index == 3:
            busy = [a for a in job.pool.actors if a.busy is not None] or job.pool.actors
            killed.append(busy[0].label)
            ray.kill(busy[0].handle, no_restart=True)

    summary = job.run(after_chunk=kill_a_busy_actor)
    assert summary.rows == 1000 and summary.errors == 0
    assert run([plain_texts, "-o", full, "--chunk-size", "20"], varied_int8_onnx).exit_code == 0
    assert out.read_bytes() == full.read_bytes()
    assert any(note.startswith(f"Ray actor {killed[0]} lost") and "retried" in note for note in summary.notes), summary.notes
    _, actors = batch_and_actors(summary.provider)
    assert sum(actors.values()) == 1000 and len(actors) >= 2


def test_parquet_rows_are_read_by_the_actors_with_the_local_engines_bytes(tmp_path, varied_int8_onnx, make_job):
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    texts = [_text(i) for i in range(95)]
    texts[4], texts[30] = None, "   "
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(95)], "text": texts, "other": list(range(95))}),
                   tmp_path / "in.parquet", row_group_size=13)
    local, ray_out = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    assert run([tmp_path / "in.parquet", "-o", local, "--chunk-size", "10"], varied_int8_onnx).exit_code == 3
    result = run([tmp_path / "in.parquet", "-o", ray_out, "--engine", "ray", "--ray-batch-size", "10",
                  "--ray-concurrency", "2"], varied_int8_onnx)
    assert result.exit_code == 3, result.stderr
    assert ray_out.read_bytes() == local.read_bytes()
    assert sum(batch_and_actors(result.stderr)[1].values()) == 93 and "through the driver" not in result.stderr
    # Stopped after 3 chunks and resumed: the actors start reading at row 31, in the third row group.
    out = tmp_path / "out.jsonl"
    options = BatchOptions(input=str(tmp_path / "in.parquet"), output=str(out), model=str(varied_int8_onnx))
    job = make_job(options, RayOptions(concurrency=2, batch_size=10))
    with pytest.raises(KeyboardInterrupt):
        job.run(after_chunk=_stop_at(3))
    job.close()
    options.resume = True
    resumed = make_job(options, RayOptions(concurrency=2, batch_size=10))
    summary = resumed.run()
    resumed.close()
    assert summary.resumed_from == 30 and out.read_bytes() == local.read_bytes()
    # An actor that cannot open the file (a node without the shared folder): the driver reads it.
    elsewhere = make_job(BatchOptions(input=str(tmp_path / "in.parquet"), output=str(tmp_path / "driver.jsonl"),
                                      model=str(varied_int8_onnx)), RayOptions(concurrency=2, batch_size=10))
    elsewhere.prepare()
    elsewhere.pool.on_every_actor = lambda function, *args: [True, False]
    summary = elsewhere.run()
    assert any("its rows went to them through the driver" in note for note in summary.notes), summary.notes
    assert (tmp_path / "driver.jsonl").read_bytes() == local.read_bytes()


def test_ray_errors_are_one_line(tmp_path, jsonl_with_bad_rows, varied_onnx, monkeypatch):
    result = run([jsonl_with_bad_rows, "-o", tmp_path / "x.jsonl", "--engine", "ray", "--device", "cuda"], varied_onnx)
    assert result.exit_code == 1 and result.stderr.startswith("Error: --device cuda: the Ray cluster has no GPU")
    result = run([jsonl_with_bad_rows, "--ray-concurrency", "2"], varied_onnx)
    assert result.exit_code == 2 and "--ray-concurrency need --engine ray" in result.stderr
    with pytest.raises(MlbError):
        RayBatchJob(BatchOptions(input="x"), RayOptions(batch_size=0))
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(UsageError, match=r"pip install 'mlbert\[ray\]'"):
        ray_module()


class _KillsItsActor:
    """A chunk whose scoring ends the actor's process, as running out of memory would."""

    def score(self, classifier):
        os._exit(1)


class _Rows:
    def __init__(self, count):
        self.count = count

    def score(self, classifier):
        return classifier.predict_proba(["so happy"] * self.count, chunk_size=None)


def test_a_chunk_that_kills_every_actor_it_meets_stops_the_run(varied_int8_onnx, make_job):
    """Retried on 3 actors in turn, then one error; the chunks before it were handed back."""
    import ray

    from mlbert.batch.ray.pool import ActorPool, RayUnavailable, Work

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the actors cannot import this test module
    job = make_job(BatchOptions(input="-", model=str(varied_int8_onnx)), RayOptions(concurrency=2))
    job.prepare()
    pool: ActorPool = job.pool
    handed_back = []
    with pytest.raises(RayUnavailable, match=r"chunk 2 was in flight on 3 Ray actors that died \(Ray actor #\d"):
        for work, result, actor in pool.scored_in_order([Work(0, _Rows(3)), Work(1, _KillsItsActor()),
                                                         Work(2, _Rows(2))]):
            handed_back.append((work.index, result.shape))
    assert handed_back == [(0, (3, 4))]
    assert len(pool.notes) == 3 and all(" lost (" in note and "chunk 2 retried" in note for note in pool.notes)


@pytest.mark.parametrize("message, reason", [
    ("The actor died unexpectedly before finishing this task.\n\tclass_name: ScoreActor\n\tactor_id: fb81\n"
     "\tpid: 6537\n\tip: 10.0.0.7\nThe actor died because its node has died. Node Id: e79ed5c552b1",
     "The actor died because its node has died."),
    ("The actor 97e7 is unavailable: The actor is temporarily unavailable: RpcError: RPC error: "
     "recvmsg:Connection reset by peer rpc_code: 14", "unreachable: recvmsg:Connection reset by peer"),
    ("The actor died unexpectedly before finishing this task.\n\tclass_name: ScoreActor\n"
     "The actor is dead because it was killed by `ray.kill`.", "The actor is dead because it was killed by `ray.kill`."),
])
def test_the_reason_of_a_lost_actor_is_ray_s_reason_line(message, reason):
    from mlbert.batch.ray.pool import loss_reason

    assert loss_reason(RuntimeError(message)) == reason
