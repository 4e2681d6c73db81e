"""mlb-export: a checkpoint folder -> one self-describing, verified ONNX file.

Heavy libraries (torch, transformers, optimum, onnx) are imported inside functions so
``mlb-export --help`` answers at once. The Python API is ``exporter.export.export_model``.
"""

from __future__ import annotations

try:
    from importlib.metadata import version

    __version__ = version("mlb")
except Exception:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"
