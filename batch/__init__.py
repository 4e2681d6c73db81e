"""mlb runtime: classify text files with an exported mlb ONNX model.

This package must stay importable without torch or transformers: it is what a
production box that only runs ``mlb-batch`` installs. It also owns the model file
contract (``batch.modelfile``) and the text preprocessing (``batch.preprocess``), so
that the trainer and exporter write exactly what the runtime reads.
"""

__version__ = "0.1.0"
