"""mlbert's runtime: classify text files with an exported mlb ONNX model (``mlb-batch``).

This package must stay importable without torch or transformers: it is what a
production box that only runs ``mlb-batch`` installs. It also owns the model file
contract (``modelfile``) and the text preprocessing (``preprocess``), so that the
trainer and exporter write exactly what the runtime reads.
"""

from .. import __version__

__all__ = ["__version__"]
