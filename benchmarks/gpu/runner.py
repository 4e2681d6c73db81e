"""The GPU check's run: its sizes, its steps (timed, recorded, skipped when what they need failed or
time is short), and how it runs the project's commands and the measurements of workers.py.

The commands are the installed ones: ``mlb-train``, ``mlb-export`` and ``mlb-batch`` from the
scripts folder of the Python that runs the check (a virtual environment's ``bin/``), as a user
runs them, so the check measures what ``pip install`` put there and nothing of the working tree
but its data. Results are saved after every step (results.json and results.md), so a run stopped
at a time limit still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import report

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "goemotions"
BATCH_SIZE = 32  # mlb-train's default, which both training runs use
SUMMARY = re.compile(r"mlb-batch: (\d+) rows, (\d+) errors, ([0-9.]+) s, (\d+) rows/s, (\S+)")
COMMANDS = ("mlb-train", "mlb-export", "mlb-batch")
# Nothing may reach for the Hugging Face hub: the base model is the packaged one (or --base-model).
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@dataclass
class Settings:
    """Sizes of one run. ``budget_s``: no step starts after this many seconds, and a command still running
    60 s past it is stopped; the GPU sizes are meant to fit a 10-minute slot on an H100-class GPU."""

    accelerator: str
    steps: int
    rows: int
    compare_rows: int
    pipeline_rows: int
    pipeline_batches: Tuple[int, ...]
    validate_limit: int
    budget_s: float
    cpu2_steps: int = 0
    limit_train: Optional[int] = None
    limit_eval: Optional[int] = None


GPU = Settings("cuda", steps=400, rows=100_000, compare_rows=25_000, pipeline_rows=100_000,
               pipeline_batches=(256, 64), validate_limit=2000, budget_s=520, cpu2_steps=40)
CPU = Settings("cpu", steps=3, rows=200, compare_rows=200, pipeline_rows=60, pipeline_batches=(16, 4),
               validate_limit=40, budget_s=900, limit_train=64, limit_eval=40)


class StepError(Exception):
    """One step failed; the message is one line."""


@dataclass
class Outcome:
    rc: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Check:
    """One run: where it writes, how it runs the commands, and what it found so far."""

    settings: Settings
    out: Path
    work: Path
    in_process: bool = False
    base_model: Optional[str] = None
    env: Dict[str, str] = field(default_factory=lambda: dict(OFFLINE))
    bin_dir: Path = field(default_factory=lambda: Path(sysconfig.get_path("scripts")))
    started: float = field(default_factory=time.monotonic)
    results: Dict[str, Any] = field(default_factory=dict)

    def remaining(self) -> float:
        return self.settings.budget_s - (time.monotonic() - self.started)

    def step(self, name: str, needs: Sequence[str], estimate: float, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` as the step ``name`` unless a step it needs failed or time is short; record and save."""
        record: Dict[str, Any] = {"name": name}
        self.results.setdefault("steps", []).append(record)
        failed = [n for n in needs if self.status(n) != "ok"]
        if failed:
            record.update(status="skipped", error=f"needs {', '.join(failed)}")
        elif self.remaining() < estimate:
            record.update(status="skipped", error=f"time budget: {self.remaining():.0f} s left, needs ~{estimate:.0f}")
        else:
            began = time.monotonic()
            try:
                value = fn()
                record.update(status="ok")
            except Exception as exc:  # recorded, and the run goes on: the other steps still measure
                value = None
                known = isinstance(exc, (StepError, OSError))
                record.update(status="failed",
                              error=first_line(exc) if known else f"{type(exc).__name__}: {first_line(exc)}")
            record["seconds"] = round(time.monotonic() - began, 1)
            print(f"[{time.monotonic() - self.started:6.0f} s] {name}: {record['status']} "
                  f"({record['seconds']} s){' ' + record.get('error', '') if 'error' in record else ''}", flush=True)
            self.save()
            return value
        print(f"[{time.monotonic() - self.started:6.0f} s] {name}: skipped ({record['error']})", flush=True)
        self.save()
        return None

    def status(self, name: str) -> str:
        return next((s["status"] for s in self.results.get("steps", []) if s["name"] == name), "not run")

    def save(self) -> None:
        self.results["elapsed_seconds"] = round(time.monotonic() - self.started, 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n", encoding="utf-8")
        (self.out / "results.md").write_text(report.render(self.results), encoding="utf-8")

    def cli(self, name: str, args: Sequence[Any], ok: Sequence[int] = (0,), env: Optional[Dict[str, str]] = None,
            cpus: Optional[int] = None, own_process: bool = False) -> Outcome:
        """Run one of the project's commands: its console script, or in-process with ``in_process`` unless ``own_process``."""
        args = [str(a) for a in args]
        if self.in_process and not own_process:
            outcome = self._in_process(name, args)
        else:
            outcome = self._subprocess(name, args, env, cpus)
        log = self.out / "commands.log"
        with open(log, "a", encoding="utf-8") as f:
            f.write(f"\n$ {name} {' '.join(args)}\n[exit {outcome.rc}, {outcome.seconds:.1f} s]\n{outcome.stderr[-4000:]}")
        if outcome.rc not in ok:
            raise StepError(f"{name} exited {outcome.rc}: {last_line(outcome.stderr) or last_line(outcome.stdout)}")
        return outcome

    def _subprocess(self, name: str, args: List[str], env: Optional[Dict[str, str]], cpus: Optional[int]) -> Outcome:
        pin = None
        if cpus:
            chosen = set(sorted(os.sched_getaffinity(0))[:cpus])
            pin = lambda: os.sched_setaffinity(0, chosen)  # noqa: E731
        began = time.monotonic()
        try:
            done = subprocess.run([str(self.bin_dir / name), *args], capture_output=True, text=True,
                                  env={**os.environ, **self.env, **(env or {})}, preexec_fn=pin,
                                  timeout=max(30.0, self.remaining() + 60))
        except subprocess.TimeoutExpired:
            raise StepError(f"{name} did not finish within the run's time budget") from None
        return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - began)

    def _in_process(self, name: str, args: List[str]) -> Outcome:
        import contextlib
        import io

        entry = installed_entry_point(name)
        out, err = io.StringIO(), io.StringIO()
        began = time.monotonic()
        rc = 0
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                entry(args)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return Outcome(rc, out.getvalue(), err.getvalue(), time.monotonic() - began)

    def worker(self, name: str, **arguments: Any) -> Dict[str, Any]:
        """A measurement from workers.py: its own process on the GPU, in-process for the CPU check."""
        if self.in_process:
            import workers

            try:
                return workers.WORKERS[name](**arguments)
            except Exception as exc:  # as a worker process would report it: one line
                raise StepError(f"worker {name}: {type(exc).__name__}: {first_line(exc)}") from None
        try:
            done = subprocess.run([sys.executable, str(Path(__file__).with_name("workers.py")), name,
                                   json.dumps(arguments)], capture_output=True, text=True,
                                  env={**os.environ, **self.env}, timeout=max(30.0, self.remaining() + 60))
        except subprocess.TimeoutExpired:
            raise StepError(f"worker {name} did not finish within the run's time budget") from None
        if done.returncode != 0:
            raise StepError(f"worker {name} exited {done.returncode}: {last_line(done.stderr)}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:400] if lines else ""


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:400]


def installed_entry_point(name: str) -> Callable[..., Any]:
    """The function the installed console script ``name`` calls (read from the installed metadata)."""
    from importlib.metadata import entry_points

    found = list(entry_points(group="console_scripts", name=name))
    if not found:
        raise StepError(f"{name} is not installed in this Python's environment")
    return found[0].load()


def missing_commands(bin_dir: Path) -> List[str]:
    """The project's commands that are not installed beside this Python."""
    return [name for name in COMMANDS if not (bin_dir / name).is_file()]
