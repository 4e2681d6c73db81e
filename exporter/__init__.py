"""mlb-export: a checkpoint folder -> one self-describing, verified ONNX file.

Heavy libraries (torch, transformers, optimum, onnx) are imported inside functions so
``mlb-export --help`` answers at once. The Python API is ``mlbert.exporter.export.export_model``.
"""

from mlbert import __version__

__all__ = ["__version__"]
