"""Where files live: local paths, or object-storage URLs through fsspec, behind one set of calls.

Why one module: readers, writers, the inbox and the fingerprints each need "open this",
"how big is it, has it changed", "list that folder", "put this file there atomically".
Local paths go straight to the operating system exactly as before (same bytes, same
speed, same error messages); a URL (``s3://``, ``gs://``, ``az://``, ``https://``) goes
to the fsspec filesystem of its scheme, imported only when a URL is used, so the lean
runtime needs no fsspec (``pip install 'mlbert[cloud]'`` adds fsspec and s3fs; gcsfs or
adlfs for the other stores). Credentials come from each store's own environment and
config files (``AWS_*`` and ``~/.aws``, ``GOOGLE_APPLICATION_CREDENTIALS``,
``AZURE_STORAGE_*``); ``AWS_ENDPOINT_URL`` points s3fs at an S3-compatible server.

Object stores cannot append to or rename an object. So an output URL is written
locally first (``staging.staging_path``: the partial file, its progress and its lock live
in a staging folder on this machine, which is what ``--resume`` continues), and on success
``upload_atomic`` puts the finished file under a hidden temporary key beside the target
and then moves it (a server-side copy on S3) onto the final key: a reader never sees a
half-written object under the final name.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, List, Optional, Tuple

from mlbert.errors import InputError, MlbError, UsageError, first_line

INSTALL_HINT = "pip install 'mlbert[cloud]'"
# The fsspec implementation each scheme needs, named in the error when it is missing.
SCHEME_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs",
    "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "http": "aiohttp", "https": "aiohttp",
}
READ_ONLY_SCHEMES = ("http", "https")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def is_url(path: str) -> bool:
    """``s3://bucket/key`` and the like; ``file://`` counts too (fsspec serves it)."""
    return bool(_URL.match(str(path)))


def scheme(path: str) -> str:
    match = _URL.match(str(path))
    return match.group(1).lower() if match else ""


def name_part(path: str) -> str:
    """The part of ``path`` that names the file: a URL's path without ``?query`` (for format detection)."""
    if not is_url(path):
        return str(path)
    return str(path).split("?", 1)[0].split("#", 1)[0]


def basename(path: str) -> str:
    return posixpath.basename(name_part(path)) if is_url(path) else os.path.basename(path)


def join(folder: str, name: str) -> str:
    """``folder/name`` for a local folder or a URL prefix."""
    if is_url(folder):
        return folder.rstrip("/") + "/" + name
    return os.path.join(folder, name)


def location_key(path: str) -> str:
    """What identifies a location for "is this the same file": a URL as written, else the absolute path."""
    return str(path) if is_url(path) or path == "-" else os.path.abspath(path)


# ---- fsspec ----------------------------------------------------------------------------------


def filesystem(url: str) -> Tuple[Any, str]:
    """(fsspec filesystem, path inside it) for ``url``; a missing package is a one-line usage error."""
    name = scheme(url)
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: object-storage URLs need fsspec: {INSTALL_HINT}") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError:
        package = SCHEME_PACKAGES.get(name, f"the fsspec implementation for {name}://")
        raise UsageError(f"{url}: {name}:// URLs need {package}: {INSTALL_HINT} (or pip install {package})") from None
    except ValueError as exc:
        raise UsageError(f"{url}: {first_line(exc)}") from None
    return fs, path


def failure_reason(exc: BaseException, url: str = "") -> str:
    """Why a call to a store failed, in words a user can act on."""
    if isinstance(exc, FileNotFoundError) and scheme(url) in READ_ONLY_SCHEMES:
        return "not found, or the server cannot be reached"
    if isinstance(exc, FileNotFoundError):
        return "no such object, or its bucket does not exist"
    if isinstance(exc, PermissionError):
        return "access denied (check the credentials this store reads from the environment)"
    return first_line(exc)


def storage_error(exc: BaseException, url: str, what: str) -> MlbError:
    """One line for a failed call to a store: what was tried, on which URL, and why."""
    if isinstance(exc, MlbError):
        return exc
    return MlbError(f"{url}: cannot {what} ({failure_reason(exc, url)})")


# ---- reading ---------------------------------------------------------------------------------


def open_input(path: str) -> Tuple[BinaryIO, Optional[int]]:
    """An open binary file and its size (None when unknown) for a path or URL; errors name it."""
    if not is_url(path):
        try:
            raw = open(path, "rb")
        except FileNotFoundError:
            raise InputError("no such file", path) from None
        except IsADirectoryError:
            raise InputError("is a directory, not a file", path) from None
        except OSError as exc:
            raise InputError(f"cannot open ({exc.strerror or exc})", path) from None
        try:
            size: Optional[int] = os.fstat(raw.fileno()).st_size
        except OSError:
            size = None
        return raw, size
    fs, inner = filesystem(path)
    try:
        info = fs.info(inner)
        if info.get("type") == "directory":
            raise InputError("is a folder (a prefix), not an object; give the object or end it with / for all of them",
                             path)
        handle = fs.open(inner, "rb")
    except MlbError:
        raise
    except Exception as exc:
        raise InputError(f"cannot read ({failure_reason(exc, path)})", path) from None
    size = info.get("size")
    return handle, int(size) if isinstance(size, int) else None


@dataclass(frozen=True)
class Stat:
    """What says a file changed: size, modification time and, on object stores, the ETag."""

    size: int
    mtime_ns: Optional[int]
    etag: Optional[str] = None


def stat(path: str) -> Stat:
    """``Stat`` of a path or URL; raises ``FileNotFoundError`` / ``OSError`` like ``os.stat``."""
    if not is_url(path):
        st = os.stat(path)
        return Stat(st.st_size, st.st_mtime_ns)
    fs, inner = filesystem(path)
    fs.invalidate_cache(inner)  # another process (or an earlier call here) may have changed it
    info = fs.info(inner)
    modified = next((info[k] for k in ("LastModified", "last_modified", "mtime", "updated", "timeCreated")
                     if info.get(k) is not None), None)
    etag = next((str(info[k]) for k in ("ETag", "etag", "md5Hash", "generation", "content_md5") if info.get(k)), None)
    return Stat(int(info.get("size") or 0), _as_ns(modified), etag)


def _as_ns(value: Any) -> Optional[int]:
    if value is None:
        return None
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1e9)
    try:
        return int(float(value) * 1e9)
    except (TypeError, ValueError):
        return None


def exists(path: str) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    fs, inner = filesystem(path)
    try:
        return bool(fs.exists(inner))
    except Exception as exc:
        raise storage_error(exc, path, "look up") from None


def isdir(path: str) -> bool:
    """A local folder, or a URL that is a prefix with objects under it (an https:// URL never is)."""
    if not is_url(path):
        return os.path.isdir(path)
    if scheme(path) in READ_ONLY_SCHEMES:
        return False
    fs, inner = filesystem(path)
    try:
        return bool(fs.isdir(inner))
    except Exception as exc:
        raise storage_error(exc, path, "look up") from None


def list_files(folder: str) -> List[str]:
    """The files directly in a folder or under a URL prefix (not recursive), sorted, as paths or URLs."""
    if not is_url(folder):
        return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                      if os.path.isfile(os.path.join(folder, n)))
    fs, inner = filesystem(folder)
    try:
        fs.invalidate_cache(inner)
        entries = fs.ls(inner.rstrip("/"), detail=True)
    except Exception as exc:
        raise storage_error(exc, folder, "list") from None
    prefix = folder.rstrip("/") + "/"
    return sorted(prefix + posixpath.basename(e["name"].rstrip("/")) for e in entries if e.get("type") == "file")


def glob_files(pattern: str) -> List[str]:
    """Files matching a glob, sorted, as paths or URLs."""
    if not is_url(pattern):
        import glob

        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    fs, inner = filesystem(pattern)
    try:
        fs.invalidate_cache()
        found = fs.glob(inner, detail=True)
    except Exception as exc:
        raise storage_error(exc, pattern, "list") from None
    return sorted(fs.unstrip_protocol(name) for name, info in found.items() if info.get("type") == "file")


# ---- writing ---------------------------------------------------------------------------------


def check_output_url(url: str) -> None:
    """Fail before any work when an output URL cannot be written: a read-only scheme or a missing bucket."""
    name = scheme(url)
    if name in READ_ONLY_SCHEMES:
        raise MlbError(f"{url}: {name}:// is read-only here; write to a file or an object-store URL (s3://, gs://, az://)")
    fs, inner = filesystem(url)
    bucket = inner.strip("/").split("/", 1)[0]
    if name == "file":
        return
    try:
        found = fs.exists(bucket)
    except Exception as exc:
        raise storage_error(exc, url, "look up its bucket") from None
    if not found:
        raise MlbError(f"{url}: the bucket {bucket!r} does not exist (or these credentials cannot see it)")


def temporary_key(url: str) -> str:
    """A hidden key beside ``url`` (``.NAME.<random>.tmp``): never taken for an input or an output."""
    folder, _, name = url.rstrip("/").rpartition("/")
    return f"{folder}/.{name}.{secrets.token_hex(6)}.tmp"


def put_atomic(url: str, put: Callable[[Any, str], None]) -> None:
    """``put(fs, key)`` writes a temporary key beside ``url``, which is then moved onto ``url``."""
    fs, inner = filesystem(url)
    _, tmp_inner = filesystem(temporary_key(url))
    try:
        put(fs, tmp_inner)
        fs.mv(tmp_inner, inner)
    except Exception as exc:
        try:
            fs.rm(tmp_inner)
        except Exception:
            pass  # the upload itself failed; there may be nothing to remove
        raise storage_error(exc, url, "write") from None
    finally:
        fs.invalidate_cache(inner)


def upload_atomic(local_path: str, url: str) -> None:
    """Put a finished local file at ``url``: upload to a temporary key, then move it onto the final key."""
    put_atomic(url, lambda fs, key: fs.put_file(local_path, key))


# ---- local destinations: what a path to write really is ----------------------------------------

def read_bytes(path: str) -> bytes:
    """A small file's bytes (a done marker); raises ``FileNotFoundError`` when absent."""
    if not is_url(path):
        with open(path, "rb") as f:
            return f.read()
    fs, inner = filesystem(path)
    return bytes(fs.cat_file(inner))
