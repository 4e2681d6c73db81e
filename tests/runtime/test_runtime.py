"""onnxruntime side: the golden model against PyTorch, model file errors, devices, threads,
and batching that changes no answer."""

import numpy as np
import pytest

from conftest import damaged_model_files
from mlbert.runtime.encoder import Encoder
from mlbert.errors import MlbError, ModelFileError, UsageError
from mlbert.runtime.cpus import available_cpus, cgroup_cpu_quota
import threading

from mlbert.runtime.session import Predictor, cpu_streams, load_model, sigmoid

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

def test_probabilities_and_labels_match_pytorch(golden_model, golden):
    """The runtime, fed raw texts the way mlb-batch feeds them, reproduces PyTorch's reference."""
    model = load_model(str(golden_model), "cpu", threads=1)
    header = model.header
    assert header.label_names == golden["label_names"]
    assert header.thresholds == pytest.approx(golden["thresholds"])
    assert header.preprocessing.to_dict() == golden["preprocessing"]
    rows = golden["rows"]
    texts = header.preprocessing.apply([row["text"] for row in rows])
    assert texts == [row["preprocessed"] for row in rows]
    got = Predictor(model, token_budget=256).predict(texts)
    reference = np.array([row["probabilities"] for row in rows], dtype=np.float32)
    np.testing.assert_allclose(got, reference, atol=golden["tolerance"], rtol=0)
    thresholds = np.array(header.thresholds)
    labels = [[n for n, on in zip(header.label_names, row >= thresholds) if on] for row in got]
    assert labels == [row["labels"] for row in rows]
    # The texts really differ, so a mix-up of rows could not pass unnoticed.
    assert len({tuple(row) for row in labels}) >= 4


def test_bucketed_results_equal_one_by_one_in_input_order(golden_model):
    model = load_model(str(golden_model), "cpu", threads=1)
    texts = TEXTS * 5
    bucketed = Predictor(model, token_budget=64).predict(texts)  # many small batches, mixed lengths
    big = Predictor(model, token_budget=100_000).predict(texts)  # one batch
    singles = np.stack([Predictor(model, token_budget=64).predict([t])[0] for t in texts])
    assert bucketed.shape == (len(texts), 4)
    np.testing.assert_allclose(bucketed, singles, atol=1e-5)
    np.testing.assert_allclose(big, singles, atol=1e-5)
    # The rows really differ, so an order mix-up could not pass unnoticed.
    assert np.abs(singles[0] - singles[1]).max() > 0.05


def test_two_streams_run_batches_at_once_and_give_the_same_bits(golden_model):
    """Streams change when batches run, not what is in them: the scores are equal to the bit."""
    texts = TEXTS * 8
    one = load_model(str(golden_model), "cpu", threads=1)
    two = load_model(str(golden_model), "cpu", threads=2)
    assert (one.streams, two.streams) == (1, 2)
    expected = Predictor(one, token_budget=64).predict(texts)
    streamed = Predictor(two, token_budget=64)
    meeting = threading.Barrier(2, timeout=10)  # broken unless two batches are inside run() together
    inside = streamed._run

    def run_together(*args):
        if not meeting.broken:
            meeting.wait()
        return inside(*args)

    streamed._run = run_together
    got = streamed.predict(texts)
    assert not meeting.broken
    assert got.tobytes() == expected.tobytes()
    assert np.abs(expected[0] - expected[1]).max() > 0.05  # rows differ: an order mix-up would show


def test_stream_count_defaults_and_limits(golden_model):
    assert [cpu_streams(t) for t in (1, 2, 3, 16)] == [1, 2, 2, 2]
    assert cpu_streams(4, 4) == 4
    with pytest.raises(UsageError, match="--streams 3 is more than the 2 threads"):
        cpu_streams(2, 3)
    with pytest.raises(UsageError, match="at least 1"):
        load_model(str(golden_model), "cpu", threads=2, streams=0)
    assert load_model(str(golden_model), "cpu", threads=2, streams=1).streams == 1


def test_truncation_to_the_models_max_length(golden_model):
    model = load_model(str(golden_model), "cpu", threads=1)
    encoded = Encoder(model.header).encode(["love " * 500, "hi"])
    assert encoded.lengths.tolist()[0] == model.header.max_length == 64
    assert encoded.input_ids.shape == (2, 64)


def test_header_is_read_from_the_onnx_metadata(golden_model):
    model = load_model(str(golden_model), "cpu")
    assert model.header.label_names == ["anger", "joy", "sadness", "surprise"]
    assert model.header.max_length == 64
    assert model.provider == "CPUExecutionProvider"
    assert set(model.header.input_names) <= {"input_ids", "attention_mask", "token_type_ids"}
    Predictor(model, 8192).warm_up()


@pytest.mark.parametrize("kind,message", [
    ("not-onnx", "not a readable ONNX model"),
    ("truncated", "truncated|damaged|cannot load"),
    ("headerless", "no mlb header.*mlb-export"),
    ("checksum", "tokenizer's checksum does not match"),
    ("missing", "model file not found"),
    ("folder", "is a folder"),
])
def test_damaged_missing_and_headerless_files_are_clear_errors(tmp_path, golden_model, kind, message):
    path = damaged_model_files(golden_model, tmp_path)[kind]
    with pytest.raises(ModelFileError, match=message) as info:
        load_model(str(path), "cpu")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_no_model_says_how_to_get_one():
    with pytest.raises(UsageError, match="MLB_MODEL.*mlb-train.*mlb-export"):
        load_model(None)


def test_cuda_fails_clearly_without_a_gpu(golden_model):
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(golden_model), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        if session.get_providers()[0] == "CUDAExecutionProvider":
            pytest.skip("this machine has a working CUDA provider")
    except Exception:
        pass
    with pytest.raises(MlbError, match="--device cuda.*--device cpu") as info:
        load_model(str(golden_model), "cuda")
    assert "\n" not in str(info.value)
    # auto falls back to the CPU and says so through the provider.
    assert load_model(str(golden_model), "auto").provider == "CPUExecutionProvider"


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
