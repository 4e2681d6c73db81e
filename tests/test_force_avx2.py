"""benchmarks/force_avx2.py: the patch finds onnxruntime's AVX-512F check and the copy is what loads."""

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import force_avx2  # noqa: E402


def test_pattern_finds_both_register_forms_and_points_at_the_je():
    check_edi = b"\xf7\xc7\x00\x00\x01\x00\x74\x0e\x4c\x89\xd0\x48\xf7\xd0\xa8\xe0"
    check_r10 = b"\x41\xf7\xc2\x00\x00\x01\x00\x74\x0e\x4c\x89\xc0\x48\xf7\xd0\xa8\xe0"
    other_bit = b"\xf7\xc7\x00\x00\x02\x00\x74\x0e\x4c\x89\xd0\x48\xf7\xd0\xa8\xe0"  # not the AVX-512F bit
    data = b"\x90" * 7 + check_edi + b"\x90" * 3 + check_r10 + other_bit
    sites = [m.start(1) for m in force_avx2.PATTERN.finditer(data)]
    assert sites == [7 + 6, 7 + len(check_edi) + 3 + 7]
    assert all(data[s] == 0x74 for s in sites)


def test_patched_copy_of_the_installed_onnxruntime_is_what_the_command_imports(tmp_path):
    folder = force_avx2.patched_copy(tmp_path / "ort")
    library = next((folder / "onnxruntime" / "capi").glob("onnxruntime_pybind11_state*.so"))
    assert not library.is_symlink()
    where = subprocess.run([sys.executable, "-c", "import onnxruntime; print(onnxruntime.__file__)"],
                           env=force_avx2.environment(folder), capture_output=True, text=True, check=True).stdout
    assert where.strip() == str(folder / "onnxruntime" / "__init__.py")
