"""Where an output URL is written before its upload: a staging folder on this machine.

Object stores can neither append to nor rename an object, so ``writers.OutputFile`` writes
an output URL's partial file, its progress and its lock here, and uploads the finished file
(``storage.upload_atomic``). A killed run resumed on the same machine (or with the same
staging folder) continues from here.
"""

from __future__ import annotations

import hashlib
import os
from typing import Optional

from mlbert.errors import MlbError
from mlbert.io.atomic import check_folder_writable
from mlbert.io.storage import basename

STAGING_ENV = "MLB_STAGING_DIR"


def staging_path(url: str, staging_dir: Optional[str] = None) -> str:
    """The local stand-in for an output URL: ``STAGING/<hash of the URL>/<name>``.

    Its ``.partial``, ``.progress`` and ``.lock`` files are what ``--resume`` continues and
    what stops two runs on this machine writing the same URL. The folder comes from
    ``staging_dir`` (``--staging-dir``), ``$MLB_STAGING_DIR``, else ``~/.cache/mlbert/staging``.
    """
    base = staging_dir or os.environ.get(STAGING_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mlbert", "staging")
    folder = os.path.join(base, hashlib.sha256(url.encode("utf-8")).hexdigest()[:16])
    return os.path.join(folder, basename(url) or "output")


def make_staging_folder(local_path: str, url: str) -> None:
    """Create the staging folder of ``staging_path`` and check that it is writable (before any row)."""
    folder = os.path.dirname(local_path)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise MlbError(f"{folder}: cannot create the staging folder for {url} ({exc.strerror or exc})") from None
    check_folder_writable(folder, f"{url}: cannot stage the output")
