"""Files appear whole or not at all: the one atomic write, and what a destination is.

Every file mlbert publishes (an output, a run report, a done marker, ``mlb.json``, metrics, a
report, an exported model) goes through here, under one rule: the bytes are written to a
temporary file beside the target, made durable (fsync), renamed over the target, and the rename
made durable (the folder's fsync); a URL gets an upload to a hidden key, then a move. A reader
never sees half a file, and a failure leaves the previous file as it was.

What is not a regular file is never replaced (``destination``): a named pipe, a character device
or an open descriptor (``/dev/stdout``) is written straight into; a symlink keeps pointing at its
target, which is what gets replaced. Destinations are checked before a run starts
(``check_destination``), by trying them: root passes ``os.access`` on any folder.
"""

from __future__ import annotations

import os
import re
import secrets
import stat as stat_module
from dataclasses import dataclass
from typing import Optional

from mlbert.errors import MlbError
from mlbert.io.storage import check_output_url, is_url, put_atomic


def umask_file_mode() -> int:
    """The mode ``open(..., "w")`` gives a new file under this process's umask (0o644 under umask 022).

    ``tempfile.mkstemp`` creates files 0o600 whatever the umask; a model or an output
    published from such a file could not be read by a cron job running as another user.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# A path that names an open descriptor (/dev/stdout -> /proc/self/fd/1, /dev/fd/3): written into, never replaced.
_DESCRIPTOR = re.compile(r"^/(proc/[^/]+|dev)/fd/\d+$")
_STREAM_KINDS = {stat_module.S_IFIFO: "a named pipe", stat_module.S_IFCHR: "a character device"}


@dataclass(frozen=True)
class Destination:
    """What writing to a local ``path`` means. ``stream`` (in words): a named pipe, a character device or an
    open descriptor (``/dev/stdout``), written straight into, since replacing it would destroy it. Otherwise
    ``target``, the regular file (or name to create) replaced atomically: ``path``, or the file a symlink at
    ``path`` points to, so the link stays a link. ``problem``: why nothing can be written there."""

    path: str
    target: str
    stream: Optional[str] = None
    problem: Optional[str] = None

    @property
    def note(self) -> Optional[str]:
        """How the summary says it was written, when it is not the plain atomic replacement."""
        if self.stream:
            return f"{self.stream}: written straight into it, not replaced atomically"
        if self.target != self.path:
            return f"a symlink: its target {self.target} replaced atomically, the link kept"
        return None


def _names_descriptor(path: str) -> bool:
    """Whether ``path`` or a symlink on the way to its target is an open descriptor (/proc/self/fd/1)."""
    hop = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on symlinks followed
        if _DESCRIPTOR.match(hop):
            return True
        if not os.path.islink(hop):
            return False
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), os.readlink(hop)))
    return False


def destination(path: str) -> Destination:
    """What ``path`` is as a place to write (``Destination``); never raises."""
    try:
        found: Optional[os.stat_result] = os.stat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        return Destination(path, path, problem=exc.strerror or str(exc))
    if _names_descriptor(path):
        return Destination(path, path, stream="an open file descriptor")
    kind = stat_module.S_IFMT(found.st_mode) if found is not None else stat_module.S_IFREG
    if kind in _STREAM_KINDS:
        return Destination(path, path, stream=_STREAM_KINDS[kind])
    if kind == stat_module.S_IFDIR:
        return Destination(path, path, problem="is a folder; give a file name")
    if kind != stat_module.S_IFREG:
        return Destination(path, path, problem="is a block device or a socket, not a file, pipe or character device")
    return Destination(path, os.path.realpath(path) if os.path.islink(path) else path)


def check_folder_writable(folder: str, prefix: str) -> None:
    """Fail (exit 1) unless a file can be created in ``folder``: tried, since root passes ``os.access`` on any folder."""
    if not os.path.isdir(folder):
        raise MlbError(f"{prefix}: the folder {folder} does not exist")
    probe = os.path.join(folder, f".mlb-probe-{secrets.token_hex(6)}.tmp")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.remove(probe)
    except OSError as exc:
        raise MlbError(f"{prefix}: {folder} is not writable ({exc.strerror or exc})") from None


def check_destination(path: str, what: str) -> Destination:
    """Fail now, before any row, when ``what`` cannot be written at ``path`` (one line, exit 1)."""
    if is_url(path):
        check_output_url(path)
        return Destination(path, path)
    found = destination(path)
    if found.problem:
        raise MlbError(f"{path}: cannot write {what} there ({found.problem})")
    if found.stream:
        if not os.access(path, os.W_OK):
            raise MlbError(f"{path}: cannot write {what} there ({found.stream} without write permission)")
        return found
    check_folder_writable(os.path.dirname(os.path.abspath(found.target)), f"{path}: cannot write {what}")
    return found


def write_bytes_atomic(path: str, data: bytes) -> None:
    """A small file (a done marker, a report) written whole or not at all, local or URL.

    A symlink keeps pointing at its target, which is replaced; a named pipe or a device is
    written straight into (``destination``).
    """
    if is_url(path):
        put_atomic(path, lambda fs, key: fs.pipe_file(key, data))
        return
    found = destination(path)
    if found.problem:
        raise MlbError(f"{path}: cannot write there ({found.problem})")
    if found.stream:
        with open(path, "ab") as f:
            f.write(data)
        return
    folder, name = os.path.split(os.path.abspath(found.target))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        publish_file(tmp, found.target)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_text_atomic(path: str, text: str) -> None:
    """``write_bytes_atomic`` for UTF-8 text (JSON, Markdown, HTML)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def publish_file(finished: str, path: str) -> None:
    """Put a finished local file at ``path`` under the one durability rule: its bytes on disk
    (fsync), then renamed over ``path`` (a symlink's target, the link kept), then the rename
    itself on disk (the folder's fsync). ``finished`` must be in the target's folder."""
    target = destination(path).target
    with open(finished, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(finished, target)
    fsync_folder(target)


def fsync_folder(path: str) -> None:
    """Make a rename in ``path``'s folder durable (best effort: some filesystems refuse a folder fsync)."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


