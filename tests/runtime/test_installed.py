"""What ``pip install mlbert`` gives, checked where scripts/test_runtime_only.sh runs this folder.

That script sets MLB_RUNTIME_ONLY=1 in a virtual environment holding the built wheel and its
runtime dependencies only. There, the package under test must be the installed one (not the
repository's folders on sys.path) and nothing heavy may be importable at all.
"""

import importlib.util
import os
import sysconfig
from pathlib import Path

import pytest

RUNTIME_ONLY = os.environ.get("MLB_RUNTIME_ONLY") == "1"


@pytest.mark.skipif(not RUNTIME_ONLY, reason="runs in scripts/test_runtime_only.sh's environment")
def test_the_installed_wheel_is_under_test_without_heavy_packages():
    import mlbert
    import mlbert.batch.cli

    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for module in (mlbert, mlbert.batch.cli):
        assert Path(module.__file__).resolve().is_relative_to(site), module.__file__
    for heavy in ("torch", "transformers", "optimum", "onnx", "sklearn", "datasets"):
        assert importlib.util.find_spec(heavy) is None, f"{heavy} is installed in the runtime-only environment"
