"""Inputs and outputs in object storage, against a real S3-compatible server on 127.0.0.1.

The server is moto's (``moto[server]``, in the ``test`` extra): a real HTTP server speaking
the S3 API, reached by s3fs exactly as a bucket on AWS would be (``AWS_ENDPOINT_URL``).
Without moto and s3fs (the runtime-only environment) these tests skip, except the one-line
error for a URL without fsspec, which simulates the missing package and runs everywhere.
"""

import http.server
import logging
import os
import signal
import sys
import threading

import pytest
from click.testing import CliRunner

from mlbert.batch.cli import cli
from test_batch_cli import KILLER, TEXTS, _python, _write, records, run

BUCKET = "lake"


@pytest.fixture(scope="module")
def s3_server():
    pytest.importorskip("s3fs")
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, tmp_path):
    """A fresh bucket on the server; credentials and endpoint in the environment, as a cron job has them."""
    import fsspec

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": s3_server, "MLB_STAGING_DIR": str(tmp_path / "staging")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    yield fs
    fs.invalidate_cache()


def _put(fs, local, key):
    fs.put_file(str(local), f"{BUCKET}/{key}")
    return f"s3://{BUCKET}/{key}"


def _get(fs, key):
    fs.invalidate_cache()
    return fs.cat_file(f"{BUCKET}/{key}")


def _parquet_input(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(len(TEXTS))], "text": TEXTS}), path, row_group_size=2)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_file_in_a_bucket_gives_the_records_of_a_local_run(s3, tmp_path, golden_model, fmt):
    local = _parquet_input(tmp_path) if fmt == "parquet" else _write(tmp_path / f"in.{fmt}", fmt, TEXTS)
    url = _put(s3, local, f"in/today.{fmt}")
    result = run([url, "-o", f"s3://{BUCKET}/out/labels.jsonl"], golden_model)
    assert result.exit_code == 0, result.output
    expected = run([str(local), "-o", str(tmp_path / "labels.jsonl")], golden_model)
    assert expected.exit_code == 0
    assert _get(s3, "out/labels.jsonl") == (tmp_path / "labels.jsonl").read_bytes()
    # Nothing left behind: no temporary key in the bucket, no staging files on this machine.
    assert sorted(s3.find(BUCKET)) == [f"{BUCKET}/in/today.{fmt}", f"{BUCKET}/out/labels.jsonl"]
    assert not any(files for _, _, files in os.walk(tmp_path / "staging"))


def test_parquet_records_into_the_bucket(s3, tmp_path, golden_model):
    pq = pytest.importorskip("pyarrow.parquet")
    url = _put(s3, _parquet_input(tmp_path), "in/today.parquet")
    result = run([url, "-o", f"s3://{BUCKET}/out/labels.parquet"], golden_model)
    assert result.exit_code == 0, result.output
    (tmp_path / "got.parquet").write_bytes(_get(s3, "out/labels.parquet"))
    table = pq.read_table(tmp_path / "got.parquet")
    assert table.num_rows == len(TEXTS) and table.column("id").to_pylist() == [f"r{i}" for i in range(len(TEXTS))]


def test_a_killed_run_into_a_bucket_resumes_to_the_same_bytes(s3, tmp_path, golden_model):
    texts = [TEXTS[(i * 5) % len(TEXTS)] + (" !" * (i % 3)) for i in range(90)]
    url = _put(s3, _write(tmp_path / "in.jsonl", "jsonl", texts), "in/big.jsonl")
    target = f"s3://{BUCKET}/out/labels.jsonl"
    s3.pipe_file(f"{BUCKET}/out/labels.jsonl", b"yesterday\n")
    reference = tmp_path / "reference.jsonl"
    done = _python(["-c", KILLER, str(tmp_path / "in.jsonl"), str(reference), str(golden_model), "15", "-1", "0"],
                   tmp_path)
    assert done.returncode == 0, done.stderr
    killed = _python(["-c", KILLER, url, target, str(golden_model), "15", "2", "0"], tmp_path)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _get(s3, "out/labels.jsonl") == b"yesterday\n"  # never a half-written object under the final name
    assert sorted(s3.find(f"{BUCKET}/out")) == [f"{BUCKET}/out/labels.jsonl"]
    resumed = CliRunner().invoke(cli, [url, "-o", target, "-m", str(golden_model), "--chunk-size", "15",
                                       "--threads", "1", "--device", "cpu", "--resume"], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after row 30" in resumed.stderr
    assert _get(s3, "out/labels.jsonl") == reference.read_bytes()


def test_missing_bucket_or_object_is_one_line_and_exit_1(s3, tmp_path, golden_model):
    local = _write(tmp_path / "in.csv", "csv", TEXTS)
    for args, where in [
        ([f"s3://{BUCKET}/in/nothing.csv"], f"s3://{BUCKET}/in/nothing.csv"),
        (["s3://no-such-bucket/in.csv"], "s3://no-such-bucket/in.csv"),
        ([str(local), "-o", "s3://no-such-bucket/out.jsonl"], "s3://no-such-bucket/out.jsonl"),
    ]:
        result = run(args, golden_model)
        assert result.exit_code == 1, (args, result.output)
        assert result.stderr.startswith(f"Error: {where}: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "staging").exists() or not any(os.scandir(tmp_path / "staging"))


def test_an_inbox_in_a_bucket_with_done_markers(s3, tmp_path, golden_model):
    _put(s3, _write(tmp_path / "a.csv", "csv", TEXTS), "inbox/a.csv")
    _put(s3, _write(tmp_path / "b.jsonl", "jsonl", TEXTS[:3]), "inbox/b.jsonl")
    _put(s3, _write(tmp_path / "notes.md", "txt", ["not an input"]), "inbox/notes.md")
    first = run([f"s3://{BUCKET}/inbox/", "-o", f"s3://{BUCKET}/labels/"], golden_model)
    assert first.exit_code == 0, first.output
    assert "2 files: 2 written" in first.stderr and "notes.md" in first.stderr
    assert sorted(s3.find(f"{BUCKET}/labels")) == [f"{BUCKET}/labels/{n}" for n in
                                                   ("a.jsonl", "a.jsonl.done", "b.jsonl", "b.jsonl.done")]
    assert len(records(_get(s3, "labels/b.jsonl").decode())) == 3
    again = run([f"s3://{BUCKET}/inbox/", "-o", f"s3://{BUCKET}/labels/"], golden_model)
    assert "2 files: 0 written, 2 already done" in again.stderr
    s3.pipe_file(f"{BUCKET}/labels/a.jsonl", b"edited by hand\n")  # an output changed: that file runs again
    third = run([f"s3://{BUCKET}/inbox/*.csv", "-o", f"s3://{BUCKET}/labels/"], golden_model)
    assert "1 files: 1 written" in third.stderr
    assert len(records(_get(s3, "labels/a.jsonl").decode())) == len(TEXTS)


def test_https_inputs_are_read_and_refused_as_outputs(tmp_path, golden_model):
    pytest.importorskip("fsspec")
    pytest.importorskip("aiohttp")
    _write(tmp_path / "in.tsv", "tsv", TEXTS)
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        result = run([f"{base}/in.tsv"], golden_model)
        assert result.exit_code == 0, result.output
        assert result.stdout == run([str(tmp_path / "in.tsv")], golden_model).stdout
        missing = run([f"{base}/missing.tsv"], golden_model)
        assert missing.exit_code == 1 and missing.stderr.startswith(f"Error: {base}/missing.tsv: ")
        refused = run([str(tmp_path / "in.tsv"), "-o", f"{base}/out.jsonl"], golden_model)
        assert refused.exit_code == 1 and "read-only" in refused.stderr  # an output that cannot be written
    finally:
        server.shutdown()


def test_a_url_without_fsspec_is_one_line_naming_the_extra(tmp_path, golden_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "fsspec", None)  # import fsspec now raises ImportError
    result = run(["s3://bucket/in.csv"], golden_model)
    assert result.exit_code == 2
    assert result.stderr == "Error: s3://bucket/in.csv: object-storage URLs need fsspec: pip install 'mlbert[cloud]'\n"


@pytest.mark.parametrize("store", ["s3", "http"])
def test_ray_actors_read_a_parquet_object_themselves_with_the_local_engines_bytes(store, request, tmp_path,
                                                                                  golden_model):
    """The Ray engine on a Parquet object: every actor opens the URL itself (no "through the driver"
    note), and the records are the local engine's for the same chunking. Ray starts inside the test,
    after the store's credentials are in the environment, as a cron job's driver would have them.
    http:// is a store pyarrow cannot open by itself: only fsspec (mlb's storage module) can."""
    ray = pytest.importorskip("ray")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    if ray.is_initialized():
        ray.shutdown()
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(60)]
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(60)], "text": texts}), tmp_path / "in.parquet",
                   row_group_size=7)
    server = None
    if store == "s3":
        url = _put(request.getfixturevalue("s3"), tmp_path / "in.parquet", "in/today.parquet")
    else:
        pytest.importorskip("aiohttp")
        handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
        http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/in.parquet"
    local, on_ray = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    try:
        assert run([url, "-o", local, "--chunk-size", "10"], golden_model).exit_code == 0
        result = run([url, "-o", on_ray, "--engine", "ray", "--ray-concurrency", "2", "--ray-batch-size", "10"],
                     golden_model)
    finally:
        ray.shutdown()
        if server is not None:
            server.shutdown()
    assert result.exit_code == 0, result.stderr
    assert "through the driver" not in result.stderr and " scored rows: " in result.stderr, result.stderr
    assert on_ray.read_bytes() == local.read_bytes() and len(records(local.read_text())) == 60
