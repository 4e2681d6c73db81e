"""Make the fixed, seeded train/dev/test split of XED English shipped beside this script.

Reads the upstream ``AnnotatedData/en-annotated.tsv`` (its sha256 is checked), shuffles
the rows with ``random.Random(SEED)``, cuts 80/10/10 and writes ``train.tsv.gz``,
``dev.tsv.gz`` and ``test.tsv.gz`` (gzip without a name or time stamp, so the bytes are
the same on every run). Each row: the subtitle line, its emotion ids (1-based, sorted,
comma-separated) and an id naming the upstream line (``en-<line number>``).

    python data/xed-en/make_split.py PATH/TO/en-annotated.tsv
"""

from __future__ import annotations

import gzip
import hashlib
import os
import random
import sys
from typing import List, Tuple

SEED = 42
UPSTREAM_SHA256 = "26ac0254fbdb8b09cf2b00d44041d9084ece31bd200ae7c0e0662fbd8b037d98"
SHARES = (("train", 0.8), ("dev", 0.1), ("test", 0.1))
HERE = os.path.dirname(os.path.abspath(__file__))

Row = Tuple[str, str, str]


def read_upstream(path: str) -> List[Row]:
    data = open(path, "rb").read()
    digest = hashlib.sha256(data).hexdigest()
    if digest != UPSTREAM_SHA256:
        sys.exit(f"{path}: sha256 {digest}, expected {UPSTREAM_SHA256} (not the upstream file)")
    rows = []
    for number, line in enumerate(data.decode("utf-8").split("\r\n"), 1):
        if not line:
            continue
        text, ids = line.split("\t")
        labels = ",".join(str(i) for i in sorted({int(x) for x in ids.split(",")}))
        rows.append((text, labels, f"en-{number}"))
    return rows


def write_split(name: str, rows: List[Row]) -> None:
    path = os.path.join(HERE, f"{name}.tsv.gz")
    body = "".join(f"{text}\t{labels}\t{row_id}\n" for text, labels, row_id in rows).encode("utf-8")
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as f:
        f.write(body)
    print(f"{name}: {len(rows)} rows")


def main(path: str) -> None:
    rows = read_upstream(path)
    order = list(range(len(rows)))
    random.Random(SEED).shuffle(order)
    start = 0
    for i, (name, share) in enumerate(SHARES):
        end = len(rows) if i == len(SHARES) - 1 else start + round(share * len(rows))
        write_split(name, [rows[j] for j in order[start:end]])
        start = end


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
