"""A bundle cut into checksummed parts that travel to the GPU machine over several calls.

Why: the GPU machine this project borrows takes at most 64 MiB per call (the working tree
plus carried folders), has no package index, and keeps files only while it stays busy. What
it lacks (onnxruntime-gpu, the pinned transformers stack, the base model) is packed here
into one ``.tar.xz`` (scripts/gpu_prepare.py), cut into parts, and each call carries one
part folder: the part plus ``manifest.json`` with every part's sha256. There, ``receive``
checks a part and copies it out of the repository into ``STASH`` (a part that does not
match is refused with one line, so that call can simply be sent again); the last call joins
the parts, checks the whole bundle's sha256 and unpacks it. Stdlib only: it runs before
anything is installed there.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Optional

MANIFEST = "manifest.json"
STASH = Path(os.environ.get("MLB_GPU_STASH", "/tmp/mlb-gpu/parts"))
CHUNK = 1 << 20


class PartError(Exception):
    """A part or bundle that is missing, damaged or from another preparation (one line)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def part_name(index: int, count: int) -> str:
    """``part-2-of-5``: the name says where it belongs and how many there are."""
    return f"part-{index}-of-{count}"


def split_file(bundle: Path, folder: Path, part_bytes: int) -> Dict[str, Any]:
    """Cut ``bundle`` into ``folder/N/part-N-of-M`` (one folder per call) and write each folder's manifest."""
    if part_bytes < 1:
        raise ValueError("part_bytes must be positive")
    size = bundle.stat().st_size
    count = max(1, -(-size // part_bytes))
    parts: List[Dict[str, Any]] = []
    with open(bundle, "rb") as src:
        for index in range(1, count + 1):
            name = part_name(index, count)
            target = folder / str(index) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            written = 0
            with open(target, "wb") as dst:
                while written < part_bytes:
                    block = src.read(min(CHUNK, part_bytes - written))
                    if not block:
                        break
                    dst.write(block)
                    digest.update(block)
                    written += len(block)
            parts.append({"name": name, "bytes": written, "sha256": digest.hexdigest()})
    manifest = {"bundle": bundle.name, "bytes": size, "sha256": sha256_file(bundle), "parts": parts}
    for index in range(1, count + 1):
        (folder / str(index) / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: Path) -> Dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["parts"] = list(manifest["parts"])
        return manifest
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PartError(f"{path}: no readable manifest ({type(exc).__name__})") from None


def check_part(path: Path, expected: Dict[str, Any]) -> None:
    """The part's size and sha256 must be the manifest's."""
    if not path.is_file():
        raise PartError(f"{path.name}: missing")
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise PartError(f"{path.name}: {size} bytes, the manifest says {expected['bytes']}: send that call again")
    if sha256_file(path) != expected["sha256"]:
        raise PartError(f"{path.name}: sha256 does not match the manifest (damaged in transfer): send that call again")


def stash_folder(manifest: Dict[str, Any], stash: Optional[Path] = None) -> Path:
    """Where this bundle's parts wait: one folder per bundle checksum, so two preparations never mix."""
    return (stash or STASH) / manifest["sha256"][:16]


def receive(folder: Path, stash: Optional[Path] = None) -> List[str]:
    """Check the parts in ``folder`` against its manifest and copy them to the stash; returns what is still missing."""
    manifest = read_manifest(folder)
    target = stash_folder(manifest, stash)
    target.mkdir(parents=True, exist_ok=True)
    arrived = [p for p in manifest["parts"] if (folder / p["name"]).exists()]
    if not arrived:
        raise PartError(f"{folder}: holds no part named in its manifest")
    for part in arrived:
        check_part(folder / part["name"], part)
    for part in arrived:  # copied, not moved: a rehearsal here keeps its transfer folders intact
        shutil.copyfile(folder / part["name"], target / part["name"])
    (target / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return missing_parts(manifest, target)


def missing_parts(manifest: Dict[str, Any], folder: Path) -> List[str]:
    return [p["name"] for p in manifest["parts"] if not (folder / p["name"]).is_file()]


def stashed_manifests(stash: Optional[Path] = None) -> List[Dict[str, Any]]:
    """The manifests of the bundles whose parts have started to arrive here, the latest last."""
    stash = stash or STASH
    found = []
    folders = sorted(stash.glob("*/"), key=lambda p: (p / MANIFEST).stat().st_mtime if (p / MANIFEST).exists() else 0)
    for folder in folders if stash.is_dir() else []:
        try:
            found.append(read_manifest(folder))
        except PartError:
            continue
    return found


def join(manifest: Dict[str, Any], folder: Path, bundle: Path) -> Path:
    """Concatenate the parts in order into ``bundle``, checking each part and then the whole."""
    missing = missing_parts(manifest, folder)
    if missing:
        raise PartError(
            f"{len(missing)} of {len(manifest['parts'])} parts missing here ({', '.join(missing)}): the machine was "
            "probably given back between calls; send every call again, from the first, back to back"
        )
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with open(bundle, "wb") as dst:
        for part in manifest["parts"]:
            check_part(folder / part["name"], part)
            with open(folder / part["name"], "rb") as src:
                shutil.copyfileobj(src, dst, CHUNK)
    if sha256_file(bundle) != manifest["sha256"]:
        raise PartError(f"{bundle.name}: the joined bundle's sha256 does not match the manifest")
    return bundle


def unpack(bundle: Path, destination: Path) -> Path:
    """Unpack the bundle (a tar, compressed as tarfile can read it) into ``destination`` in one pass.

    Only plain files and folders inside ``destination`` are accepted: the parts come from
    this project's own preparation, but a check costs nothing.
    """
    destination.mkdir(parents=True, exist_ok=True)
    root = destination.resolve()
    with tarfile.open(bundle, "r|*") as tar:
        for member in tar:
            target = (root / member.name).resolve()
            if root != target and root not in target.parents:
                raise PartError(f"{bundle.name}: member {member.name!r} would land outside {destination}")
            if not (member.isfile() or member.isdir()):
                raise PartError(f"{bundle.name}: member {member.name!r} is neither a file nor a folder")
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, root, filter="data")
            else:  # Python before 3.11.4: the checks above are the filter
                tar.extract(member, root)
    return destination
