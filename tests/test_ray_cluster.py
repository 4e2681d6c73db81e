"""``mlb-batch --engine ray`` on a 2-node Ray cluster on 127.0.0.1, losing a node mid-run.

The cluster (``ray.cluster_utils.Cluster``: a head without CPUs for actors, as in the
KubeRay recipe, and worker nodes of 1 CPU each) starts once for the module and is shut
down at its end; each run is a separate ``python -m mlbert.batch`` process joining it, so
what the user sees (stdout, stderr, exit code) is what the test sees. Nodes are killed
with SIGKILL, as a preempted machine would be. Marked slow (about a minute); CI runs it.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow
pytest.importorskip("ray")

from mlbert.batch.cli import cli  # noqa: E402

WORDS = "i am so happy sad angry glad love hate it this the not very what wow oh no yes great terrible awful day".split()
ROWS, BATCH = 6000, 20
# Nodes are declared dead after ~1.5 s without a health check, not Ray's default ~30 s.
FAST_HEALTH = {"health_check_period_ms": 500, "health_check_failure_threshold": 3, "health_check_timeout_ms": 500}
RUN_TIMEOUT = 180
# MLB_RAY_ACTOR_WAIT of the run that loses its only node: long enough for the actor of the
# previous test's driver to be released so that this run's actor can start (slow on a loaded
# machine), short enough that giving up after the loss costs the test little.
ACTOR_WAIT = 20


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # The nodes' and drivers' temporary folder: a short path (Ray's sockets live below it)
    # that the test checks is left empty by mlb.
    scratch = tempfile.mkdtemp(prefix="mlbray-", dir="/tmp")
    saved = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = scratch
    head = None
    try:
        head = Cluster(initialize_head=True, connect=False, head_node_args=dict(
            num_cpus=0, include_dashboard=False, _system_config=FAST_HEALTH))
        yield SimpleNamespace(cluster=head, scratch=scratch, workers=[])
    finally:
        if head is not None:
            head.shutdown()
        if saved is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved
        shutil.rmtree(scratch, ignore_errors=True)


def workers(cluster, count: int) -> None:
    """Add 1-CPU worker nodes until ``count`` are alive."""
    while len(cluster.workers) < count:
        cluster.workers.append(cluster.cluster.add_node(num_cpus=1))
    cluster.cluster.wait_for_nodes()


def kill_node(cluster) -> None:
    cluster.cluster.remove_node(cluster.workers.pop(), allow_graceful=False)


def kill_node_mid_run(cluster, driver: subprocess.Popen) -> None:
    """Kill a worker node while the run still has most of its chunks to score.

    The driver is paused (SIGSTOP) from before the kill until Ray has declared the node dead
    (FAST_HEALTH: about 1.5 s), then resumed: on a fast machine the 6,000 rows take well under
    a second, so without the pause the run could finish before Ray notices the loss and the test
    would check nothing. The actors keep what they were given; the driver, resumed, meets the
    lost actor and its chunk exactly as it would on a slower run.
    """
    driver.send_signal(signal.SIGSTOP)
    try:
        kill_node(cluster)
        time.sleep(4 * FAST_HEALTH["health_check_period_ms"] * FAST_HEALTH["health_check_failure_threshold"] / 1000)
    finally:
        driver.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "texts.txt"
    lines = [" ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(1 + (i * 13) % 30)) for i in range(ROWS)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def reference(texts, varied_int8_onnx, tmp_path_factory) -> bytes:
    """The local engine's output with the same chunking and threads."""
    out = tmp_path_factory.mktemp("reference") / "local.jsonl"
    result = CliRunner().invoke(cli, [str(texts), "-o", str(out), "-m", str(varied_int8_onnx), "--chunk-size",
                                      str(BATCH), "--threads", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return out.read_bytes()


def start_driver(cluster, texts: Path, out: Path, model: Path, *extra: str, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "mlbert.batch", str(texts), "-o", str(out), "-m", str(model), "--engine", "ray",
               "--ray-address", cluster.cluster.address, "--ray-batch-size", str(BATCH), "--threads", "1", *extra]
    environment = dict(os.environ, TMPDIR=cluster.scratch, MLB_RAISE_ERRORS="", **(env or {}))
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)


def when_written(driver: subprocess.Popen, out: Path, rows: int) -> None:
    """Wait until the run's checkpoint says ``rows`` rows are written (so it is mid-run, every actor
    has scored a chunk), or fail with what the driver said."""
    progress = Path(str(out) + ".progress")
    deadline = time.monotonic() + RUN_TIMEOUT
    while True:
        try:
            if json.loads(progress.read_text(encoding="utf-8"))["rows_done"] >= rows:
                return
        except (OSError, ValueError, KeyError):
            pass  # not written yet, or being replaced
        if driver.poll() is not None or time.monotonic() > deadline:
            stdout, stderr = driver.communicate()
            pytest.fail(f"the run ended before {rows} rows were written: {driver.returncode}\n{stderr}")
        time.sleep(0.05)


def finish(driver: subprocess.Popen):
    try:
        stdout, stderr = driver.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        driver.kill()
        stdout, stderr = driver.communicate()
        pytest.fail(f"the run did not end within {RUN_TIMEOUT} s:\n{stderr}")
    return driver.returncode, stdout, stderr


def nothing_left_in_the_temporary_folder(cluster) -> None:
    # Ray keeps its sessions in a folder of its own ("ray": its logs, mlb-driver-PID.log among
    # them), and onnxruntime a 51-byte session id (".ses") in the temporary folder of every
    # process that builds a session, the local engine's too; mlb must leave nothing else, and
    # no copy of the model anywhere.
    left = sorted(set(os.listdir(cluster.scratch)) - {"ray", ".ses"})
    assert left == [], left
    for root, _, files in os.walk(cluster.scratch):
        assert not [f for f in files if f.endswith(".onnx")], (root, files)


def test_a_lost_node_costs_only_its_chunk_and_the_bytes_stay_the_same(cluster, texts, reference, varied_int8_onnx,
                                                                       tmp_path):
    workers(cluster, 2)
    out = tmp_path / "out.jsonl"
    driver = start_driver(cluster, texts, out, varied_int8_onnx)
    when_written(driver, out, 10 * BATCH)
    kill_node_mid_run(cluster, driver)
    code, stdout, stderr = finish(driver)
    assert code == 0, stderr
    assert out.read_bytes() == reference
    lines = stderr.splitlines()
    assert stdout == "" and all(line.startswith("mlb-batch: ") for line in lines), stderr  # nothing of Ray's
    assert any(" lost with its node (" in line and "retried on the remaining actors" in line for line in lines), stderr
    summary = lines[-1]
    assert f"{ROWS} rows, 0 errors" in summary and f"{BATCH}-row batches; 2 actors scored rows: " in summary, summary
    per_actor = summary.split("scored rows: ")[1].split(")")[0].split(", ")
    assert sum(int(item.rsplit(" ", 1)[1]) for item in per_actor) == ROWS, summary
    nothing_left_in_the_temporary_folder(cluster)


def test_no_actor_left_is_one_line_and_resume_finishes_the_same_bytes(cluster, texts, reference, varied_int8_onnx,
                                                                     tmp_path):
    workers(cluster, 1)
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"the previous night's output\n")
    driver = start_driver(cluster, texts, out, varied_int8_onnx, env={"MLB_RAY_ACTOR_WAIT": str(ACTOR_WAIT)})
    when_written(driver, out, 10 * BATCH)
    kill_node_mid_run(cluster, driver)
    code, stdout, stderr = finish(driver)
    assert code == 1 and stdout == ""
    assert len(stderr.splitlines()) == 1, stderr
    assert stderr.startswith("Error: --engine ray: no Ray actor left to score chunk"), stderr
    assert " lost " in stderr and f"{out} is unchanged and --resume continues" in stderr, stderr
    assert out.read_bytes() == b"the previous night's output\n"

    workers(cluster, 1)
    code, stdout, stderr = finish(start_driver(cluster, texts, out, varied_int8_onnx, "--resume"))
    assert code == 0, stderr
    assert "mlb-batch: resuming after row" in stderr, stderr
    assert out.read_bytes() == reference
    nothing_left_in_the_temporary_folder(cluster)
