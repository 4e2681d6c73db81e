"""Start or join Ray for ``mlb-batch --engine ray``, with Ray's own messages kept off the terminal.

Why a module of its own: mlb-batch's terminal output is a contract (records on stdout when
``-o -``, one ``Error:`` line or one summary line on stderr, for cron mail). Ray prints in
three places of its own: its Python loggers (stderr), the driver's error listener, which
prints cluster events such as "node ... has been marked dead" and a dead raylet's last log
lines to STDOUT, and warnings about errors nobody fetched. All three are sent to a file in
Ray's session log folder (``<session>/logs/mlb-driver-PID.log``) beside Ray's own logs, so
a lost node is one line of mlb's (a note or the error) and the details are where Ray's
logs are.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

from mlbert.runtime.cpus import available_cpus
from mlbert.errors import MlbError, UsageError, first_line

INSTALL_HINT = "pip install 'mlbert[ray]' (or pip install 'ray[data]>=2.40,<3')"
# Ray's messages before the session's log folder is known wait here, then go to its file.
_EARLY_MESSAGES = 10_000


@dataclass
class RayOptions:
    """The Ray engine's own settings (the rest is ``BatchOptions``)."""

    address: Optional[str] = None  # join this cluster ("auto", "host:6379", "ray://host:10001"); None: a local one
    concurrency: Optional[int] = None  # actors; default: CPUs (or GPUs) in the cluster / per-actor share
    batch_size: Optional[int] = None  # rows per actor call; default: sized from the input (ray_engine)
    num_cpus: Optional[int] = None  # CPUs of a local instance; default: the CPUs this process may use


def ray_module() -> Any:
    """``ray``, or a usage error that says how to install it."""
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")  # errors are fetched and reported by mlb
    try:
        import ray
    except ImportError:
        raise UsageError(f"--engine ray needs Ray: {INSTALL_HINT}") from None
    return ray


class _RayLog:
    """Where Ray's driver-side messages go: a buffer until Ray is up, then a file in its log folder."""

    def __init__(self) -> None:
        self.buffer = logging.handlers.MemoryHandler(_EARLY_MESSAGES, flushLevel=logging.CRITICAL + 1)
        self.path: Optional[str] = None

    def take_over_ray_loggers(self) -> None:
        ray_logger = logging.getLogger("ray")
        for handler in list(ray_logger.handlers):
            ray_logger.removeHandler(handler)
        ray_logger.addHandler(self.buffer)
        ray_logger.propagate = False

    def open_file(self, ray: Any) -> None:
        """Send what was buffered, and all later messages, to ``<session>/logs/mlb-driver-PID.log``."""
        folder = _session_logs_folder(ray)
        target: logging.Handler
        if folder is None:  # a Ray Client connection: the session's folder is on the head
            target = logging.NullHandler()
        else:
            self.path = os.path.join(folder, f"mlb-driver-{os.getpid()}.log")
            target = logging.FileHandler(self.path, encoding="utf-8", delay=True)
            target.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.buffer.setTarget(target)
        self.buffer.flush()
        logging.getLogger("ray").removeHandler(self.buffer)
        logging.getLogger("ray").addHandler(target)

    def console_message(self, data: Dict[str, Any], ignore_prefix: bool = False) -> None:
        """Replacement for Ray's ``print_to_stdstream``: cluster events into the log file, not stdout."""
        source = data.get("pid", "ray")
        for line in data.get("lines", []):
            logging.getLogger("ray.console").warning("(%s) %s", source, line)


_LOG = _RayLog()


def _session_logs_folder(ray: Any) -> Optional[str]:
    try:  # Ray keeps the driver's node (and its session folders) here; not a public API
        folder = ray._private.worker._global_node.get_logs_dir_path()
    except Exception:  # a Ray Client, or a Ray that moved it: the messages are dropped, not printed
        return None
    return folder if folder and os.path.isdir(folder) else None


def _silence_console(ray: Any) -> None:
    worker_module = getattr(getattr(ray, "_private", None), "worker", None)
    if worker_module is not None and hasattr(worker_module, "print_to_stdstream"):
        worker_module.print_to_stdstream = _LOG.console_message


def start_ray(options: RayOptions) -> Any:
    """Join ``options.address`` or start a local instance, once per process; returns ``ray``."""
    ray = ray_module()
    if ray.is_initialized():
        return ray
    _LOG.take_over_ray_loggers()
    kwargs: Dict[str, Any] = dict(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        if options.address:
            ray.init(address=options.address, **kwargs)
        else:
            # "local": always a new instance of our own, never one found running on this machine.
            ray.init(address="local", num_cpus=options.num_cpus or available_cpus(), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = options.address or "a local instance"
        raise MlbError(f"--engine ray: cannot start or join Ray ({where}): {first_line(exc)}") from None
    _silence_console(ray)
    _LOG.open_file(ray)
    return ray


def ray_log_path() -> Optional[str]:
    """The file Ray's driver-side messages go to (None before Ray starts, or on a Ray Client)."""
    return _LOG.path
