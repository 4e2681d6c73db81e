"""What a job's output depends on, as one JSON-able value: the one settings fingerprint.

Two things compare it with an earlier run: ``--resume`` (the progress file beside a
partial output) and an inbox's done markers (``NAME.done`` beside a published output).
Both ask the same question, "would this run write what the earlier one wrote?", so both
use ``job_fingerprint``: the mlbert version, the input file, the model file and every
option that changes the records. ``--resume`` must also reproduce the earlier run's BYTES
where it continues it, so it adds the execution settings that decide how rows are grouped
and run (chunk size, token budget, execution provider, threads).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional

from mlbert import __version__
from mlbert.io.storage import is_url, open_input
from mlbert.io.storage import stat as storage_stat

# A file is identified by its path, size, modification time and the SHA-256 of its first
# and last MiB: cheap on a file of many GB, and a changed or replaced file is noticed.
_ENDS_BYTES = 1 << 20


def sha256_ends(path: str, ends_bytes: int, size: int) -> str:
    """SHA-256 of the first and last ``ends_bytes`` of a file (the whole file when it is small)."""
    digest = hashlib.sha256()
    handle, _ = open_input(path)
    with handle:
        digest.update(handle.read(ends_bytes))
        if size > 2 * ends_bytes:
            handle.seek(size - ends_bytes)
            digest.update(handle.read(ends_bytes))
    return digest.hexdigest()


def file_fingerprint(path: str) -> Dict[str, Any]:
    """Path, size, modification time and a hash of the file's ends (for a URL: its ETag, when the store gives one)."""
    if is_url(path):
        found = storage_stat(path)
        fingerprint: Dict[str, Any] = {"path": path, "size": found.size, "mtime_ns": found.mtime_ns}
        if found.etag:
            fingerprint["etag"] = found.etag
        else:
            fingerprint["sha256_ends"] = sha256_ends(path, _ENDS_BYTES, found.size)
        return fingerprint
    stat = os.stat(path)
    return {
        "path": os.path.abspath(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "sha256_ends": sha256_ends(path, _ENDS_BYTES, stat.st_size),
    }


def job_fingerprint(options: Any, output_format: str, execution: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The fingerprint of a ``BatchOptions`` job writing ``output_format``; ``execution`` for --resume."""
    model = file_fingerprint(options.model) if options.model and os.path.isfile(options.model) else None
    fingerprint: Dict[str, Any] = {
        "mlbert": __version__,
        "input": "stdin" if options.input == "-" else file_fingerprint(options.input),
        "model": model,
        "settings": {
            "format": options.format,
            "header": options.header,
            "text_column": options.text_column,
            "id_columns": list(options.id_columns),
            "output_format": output_format,
            "thresholds": list(options.thresholds),
            "top_k": options.top_k,
            "scores": options.scores,
        },
    }
    if getattr(options, "encoding", None):  # only when given, so that earlier runs' fingerprints still match
        fingerprint["settings"]["encoding"] = options.encoding
    if execution is not None:
        fingerprint["execution"] = dict(execution)
    return fingerprint
