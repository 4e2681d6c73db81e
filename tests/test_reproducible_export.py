"""The same checkpoint exported twice gives the same bytes, when the recorded time is fixed.

This is what lets scripts/build_builtin_model.sh say that it rebuilt the shipped built-in model
bit for bit: training is seeded, and the export (graph, weights, quantization, header) must add
nothing that changes between runs but the time, which ``SOURCE_DATE_EPOCH`` fixes.
"""

import hashlib
from pathlib import Path

import pytest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("quantize", ["none", "int8"])
def test_two_exports_are_byte_identical(quantize, tiny_checkpoint, tmp_path, monkeypatch):
    from mlbert.exporter.export import export_model
    from mlbert.modelfile import ModelHeader

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796428800")
    first, second = tmp_path / "a" / "model.onnx", tmp_path / "b" / "model.onnx"
    for out in (first, second):
        out.parent.mkdir()
        export_model(str(tiny_checkpoint), str(out), quantize=quantize, force=True)
    assert _sha256(first) == _sha256(second)
    import onnxruntime

    meta = onnxruntime.InferenceSession(str(first), providers=["CPUExecutionProvider"]).get_modelmeta()
    header = ModelHeader.from_metadata(meta.custom_metadata_map, where=str(first))
    assert header.provenance["exported_at"] == "2026-12-05T00:00:00Z"
