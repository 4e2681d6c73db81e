"""mlb-train: fine-tune a multi-label text classifier and write an mlb checkpoint.

Heavy libraries (torch, transformers, datasets) are imported inside functions so that
``mlb-train --help`` and the data/metrics helpers stay fast.
"""

from __future__ import annotations

try:
    from importlib.metadata import version

    __version__ = version("mlb")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
