"""Which int8 kernels a CPU has (batch.cpus) and when mlb-batch says a file does not suit it."""

import pytest

from mlbert.runtime.cpus import CpuFeatures, int8_note

AVX512_CORE = {"avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"}
ZEN3 = CpuFeatures("x86_64", frozenset({"avx2", "fma", "sse4_2"}), "AMD EPYC 7B13")
ZEN4 = CpuFeatures("x86_64", frozenset(AVX512_CORE | {"avx512_vnni"}), "AMD EPYC 9B14")
GRAVITON = CpuFeatures("aarch64", frozenset({"fp", "asimd", "asimddp", "i8mm"}))
PORTABLE = {"mode": "int8", "weights_dtype": "QInt8", "reduce_range": True, "per_channel": True}
FULL_RANGE = {"mode": "int8", "weights_dtype": "QInt8", "reduce_range": False}  # optimum's avx512_vnni preset
UNSIGNED = {"mode": "int8", "weights_dtype": "QUInt8", "reduce_range": False}  # optimum's avx2 preset


@pytest.mark.parametrize("machine,flags,path", [
    ("x86_64", {"avx2", "fma"}, "avx2"),
    ("x86_64", AVX512_CORE, "avx512bw"),
    ("x86_64", AVX512_CORE | {"avx512_vnni"}, "avx512_vnni"),
    ("x86_64", AVX512_CORE | {"avx512_vnni", "amx_int8", "amx_tile"}, "amx"),
    ("x86_64", {"avx2", "avx_vnni"}, "avx_vnni"),
    ("x86_64", {"sse4_2"}, "none"),
    ("aarch64", {"asimd", "asimddp"}, "neon_dot"),
    ("aarch64", {"asimd"}, "neon"),
])
def test_int8_path_follows_onnxruntimes_kernel_order(machine, flags, path):
    assert CpuFeatures(machine, frozenset(flags)).int8_path == path


def test_features_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 fma\n\n"
                   "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    cpu = CpuFeatures.here(str(x86))
    assert cpu.model_name == "AMD EPYC 7B13" and cpu.flags == {"fpu", "avx2", "fma"}
    assert cpu.instruction_sets() == ["AVX2", "FMA"]
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp i8mm\nCPU part\t: 0xd40\n")
    assert CpuFeatures.here(str(arm)).instruction_sets() == ["ARM dot product", "ARM i8mm"]
    assert CpuFeatures.here(str(tmp_path / "missing")).flags == frozenset()


def test_machine_kinds_are_named_by_their_int8_path():
    assert ZEN3.kind == "x86-64 with AVX2, no AVX-512 or VNNI"
    assert ZEN4.kind == "x86-64 with AVX-512 VNNI"
    assert GRAVITON.kind == "ARM64 with dot product"


def test_the_portable_file_suits_every_cpu():
    for cpu in (ZEN3, ZEN4, GRAVITON, CpuFeatures("x86_64", frozenset(AVX512_CORE))):
        assert int8_note(PORTABLE, cpu) is None


def test_full_range_weights_are_flagged_where_vpmaddubsw_saturates():
    note = int8_note(FULL_RANGE, ZEN3)
    assert "saturate" in note and "x86-64 with AVX2, no AVX-512 or VNNI" in note
    assert "mlb-export --quantize int8" in note and "\n" not in note
    assert int8_note(FULL_RANGE, CpuFeatures("x86_64", frozenset(AVX512_CORE))) is not None
    assert int8_note(FULL_RANGE, ZEN4) is None
    assert int8_note(FULL_RANGE, GRAVITON) is None


def test_unsigned_weights_are_flagged_on_x86_only():
    assert "slower widening kernels" in int8_note(UNSIGNED, ZEN3)
    assert "slower widening kernels" in int8_note(UNSIGNED, ZEN4)
    assert int8_note(UNSIGNED, CpuFeatures("x86_64", frozenset({"avx2", "avx_vnni_int8"}))) is None
    assert int8_note(UNSIGNED, GRAVITON) is None


def test_fp32_files_get_no_note():
    assert int8_note({"mode": "none"}, ZEN3) is None
    assert int8_note({"mode": "fp16", "via": "optimize O4"}, ZEN3) is None


def test_loaded_fp32_model_has_no_notes(golden_model):
    import mlbert

    assert mlbert.load(str(golden_model), "cpu").notes == []
