"""onnxruntime side: model file errors, devices, threads, and batching that changes no answer."""

import numpy as np
import pytest

from mlbert.batch.encoder import Encoder
from mlbert.batch.errors import MlbError, ModelFileError, UsageError
from mlbert.batch.cpus import available_cpus, cgroup_cpu_quota
from mlbert.batch.runtime import Predictor, load_model, sigmoid

TEXTS = [
    "i am so happy today !",
    "what a terrible awful day",
    "no",
    "wow , i love this , great day with you " * 6,  # long: truncated to the model's 64 tokens
    "sad",
    "he was not very glad that day . she was scared and afraid",
    "😂 face with tears of joy",
    "yes yes yes",
]


def test_bucketed_results_equal_one_by_one_in_input_order(varied_onnx):
    model = load_model(str(varied_onnx), "cpu", threads=1)
    texts = TEXTS * 5
    bucketed = Predictor(model, token_budget=64).predict(texts)  # many small batches, mixed lengths
    big = Predictor(model, token_budget=100_000).predict(texts)  # one batch
    singles = np.stack([Predictor(model, token_budget=64).predict([t])[0] for t in texts])
    assert bucketed.shape == (len(texts), 4)
    np.testing.assert_allclose(bucketed, singles, atol=1e-5)
    np.testing.assert_allclose(big, singles, atol=1e-5)
    # The rows really differ, so an order mix-up could not pass unnoticed.
    assert np.abs(singles[0] - singles[1]).max() > 0.05


def test_truncation_to_the_models_max_length(varied_onnx):
    model = load_model(str(varied_onnx), "cpu", threads=1)
    encoded = Encoder(model.header).encode(["love " * 500, "hi"])
    assert encoded.lengths.tolist()[0] == model.header.max_length == 64
    assert encoded.input_ids.shape == (2, 64)


def test_header_is_read_from_the_onnx_metadata(tiny_onnx):
    model = load_model(str(tiny_onnx), "cpu")
    assert model.header.label_names == ["anger", "joy", "sadness", "surprise"]
    assert model.provider == "CPUExecutionProvider"
    assert set(model.header.input_names) <= {"input_ids", "attention_mask", "token_type_ids"}
    Predictor(model, 8192).warm_up()


def test_not_onnx_truncated_and_headerless_files_are_clear_errors(tmp_path, tiny_onnx):
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model\n")
    with pytest.raises(ModelFileError, match="not a readable ONNX model"):
        load_model(str(text), "cpu")
    data = tiny_onnx.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|damaged|cannot load"):
        load_model(str(truncated), "cpu")
    headerless = tiny_onnx.parent / "optimum" / "model.onnx"  # the export before the header is attached
    with pytest.raises(ModelFileError, match="no mlb header.*mlb-export"):
        load_model(str(headerless), "cpu")
    with pytest.raises(ModelFileError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"), "cpu")
    with pytest.raises(ModelFileError, match="folder"):
        load_model(str(tmp_path), "cpu")


def test_damaged_header_is_a_clear_error(tmp_path, tiny_onnx):
    import onnx

    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key == "mlb":
            prop.value = prop.value.replace('"sha256":"', '"sha256":"00', 1)
    damaged = tmp_path / "damaged.onnx"
    onnx.save(model, str(damaged))
    with pytest.raises(ModelFileError, match="checksum"):
        load_model(str(damaged), "cpu")


def test_no_model_says_how_to_get_one():
    with pytest.raises(UsageError, match="MLB_MODEL.*mlb-train.*mlb-export"):
        load_model(None)


def test_cuda_fails_clearly_without_a_gpu(tiny_onnx):
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(tiny_onnx), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if session.get_providers()[0] == "CUDAExecutionProvider":
            pytest.skip("this machine has a working CUDA provider")
    except Exception:
        pass
    with pytest.raises(MlbError, match="--device cuda.*--device cpu") as info:
        load_model(str(tiny_onnx), "cuda")
    assert "\n" not in str(info.value)
    # auto falls back to the CPU and says so through the provider.
    assert load_model(str(tiny_onnx), "auto").provider == "CPUExecutionProvider"


def test_threads_follow_cgroup_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(str(tmp_path)) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(str(v1)) == 2.0
    assert 1 <= available_cpus() <= len(__import__("os").sched_getaffinity(0))


def test_sigmoid_is_stable():
    out = sigmoid(np.array([-1000.0, 0.0, 1000.0]))
    assert out.tolist() == [0.0, 0.5, 1.0]
    assert out.dtype == np.float32
