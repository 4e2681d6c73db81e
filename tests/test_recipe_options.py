"""The recipe options of mlb-train: losses against hand-computed values, layer-wise rates, weight averaging."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import build_tiny_model, build_tiny_tokenizer

torch = pytest.importorskip("torch")

from mlbert.errors import UsageError  # noqa: E402
from mlbert.trainer.layer_lr import layerwise_parameter_groups, parameter_depth  # noqa: E402
from mlbert.trainer.losses import (  # noqa: E402
    LossSettings,
    asymmetric_loss,
    bce_loss,
    label_correlation_loss,
    multilabel_loss,
)
from mlbert.trainer.train_options import TrainOptions  # noqa: E402
from mlbert.trainer.weight_average import TRAINING_WEIGHTS_FILE, WeightAverage, decay_at  # noqa: E402

FIXTURES = Path(__file__).parent / "fixtures"
SEMEVAL = FIXTURES / "semeval_ec_sample.tsv"


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --------------------------------------------------------------------------- losses


def test_asymmetric_loss_matches_hand_computed_cells():
    logits = torch.tensor([[0.0, 0.0, -4.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0]])
    # positive at p = 0.5, gamma+ 1: -(1 - 0.5) * log(0.5)
    positive = 0.5 * math.log(2.0)
    # negative at p = 0.5, clip 0.05: p_m = 0.45, -(0.45 ** 4) * log(0.55)
    negative = -(0.45 ** 4) * math.log(0.55)
    # negative at p = sigmoid(-4) = 0.018 < clip: no loss at all
    expected = (positive + negative + 0.0) / 3
    got = asymmetric_loss(logits, labels, gamma_neg=4.0, gamma_pos=1.0, clip=0.05)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_asymmetric_loss_without_focusing_or_clip_is_bce_and_with_equal_gammas_is_focal():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 4, generator=g) * 3
    labels = (torch.rand(5, 4, generator=g) > 0.6).float()
    plain = asymmetric_loss(logits, labels, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    assert plain.item() == pytest.approx(bce_loss(logits, labels).item(), rel=1e-5)
    p = torch.sigmoid(logits)
    pt = torch.where(labels > 0, p, 1 - p)
    focal = (-(1 - pt) ** 2 * torch.log(pt)).mean()
    got = asymmetric_loss(logits, labels, gamma_neg=2.0, gamma_pos=2.0, clip=0.0)
    assert got.item() == pytest.approx(focal.item(), rel=1e-5)


def test_label_correlation_loss_matches_hand_computed_pairs():
    # Row 1: label 0 present (p 0.5), labels 1 and 2 absent (p sigmoid(1), sigmoid(-1)).
    # Row 2: no label present, so no pair: it adds 0 to the mean over rows.
    logits = torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    row1 = (math.exp(sig(1.0) - 0.5) + math.exp(sig(-1.0) - 0.5)) / 2
    assert label_correlation_loss(logits, labels).item() == pytest.approx(row1 / 2, rel=1e-6)
    # Two present labels (p 0.5 and sigmoid(2)), one absent (p sigmoid(-2)): two pairs.
    logits = torch.tensor([[0.0, 2.0, -2.0]])
    labels = torch.tensor([[1.0, 1.0, 0.0]])
    expected = (math.exp(sig(-2.0) - 0.5) + math.exp(sig(-2.0) - sig(2.0))) / 2
    assert label_correlation_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_multilabel_loss_combines_bce_pos_weight_and_lca():
    logits = torch.tensor([[0.0, 1.0, -1.0], [0.5, -0.5, 0.0]])
    labels = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    weight = torch.tensor([2.0, 1.0, 3.0])
    bce = bce_loss(logits, labels, weight)
    # pos_weight multiplies the positive term: cell (0, 0) is 2 * log(2)
    cells = [2 * math.log(2), -math.log(1 - sig(1.0)), -math.log(1 - sig(-1.0)),
             -math.log(1 - sig(0.5)), -math.log(sig(-0.5)), 3 * math.log(2)]
    assert bce.item() == pytest.approx(sum(cells) / 6, rel=1e-6)
    plain = multilabel_loss(logits, labels, LossSettings(), pos_weight=weight)
    assert plain.item() == pytest.approx(bce.item())
    mixed = multilabel_loss(logits, labels, LossSettings(lca_weight=0.2), pos_weight=weight)
    assert mixed.item() == pytest.approx(0.8 * bce.item() + 0.2 * label_correlation_loss(logits, labels).item())
    asl = multilabel_loss(logits.half(), labels, LossSettings(loss="asl"))
    assert asl.dtype == torch.float32


def test_losses_give_finite_gradients_at_extreme_logits():
    logits = torch.tensor([[40.0, -40.0, 0.0]], requires_grad=True)
    labels = torch.tensor([[0.0, 1.0, 1.0]])
    loss = multilabel_loss(logits, labels, LossSettings(loss="asl", lca_weight=0.2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# --------------------------------------------------------------------------- layer-wise rates


def test_parameter_depth_of_bert_distilbert_and_modernbert_names():
    assert parameter_depth("bert.embeddings.word_embeddings.weight", 6) == 0
    assert parameter_depth("bert.encoder.layer.0.attention.self.query.weight", 6) == 1
    assert parameter_depth("distilbert.transformer.layer.5.ffn.lin1.weight", 6) == 6
    assert parameter_depth("model.layers.2.attn.Wqkv.weight", 6) == 3
    assert parameter_depth("bert.pooler.dense.weight", 6) == 7
    assert parameter_depth("classifier.weight", 6) == 7


def test_trainer_optimizer_gives_each_layer_its_decayed_rate(tmp_path):
    from transformers import TrainingArguments

    from mlbert.trainer.hf_trainer import multilabel_trainer_class

    model = build_tiny_model(["a", "b"])  # 2 encoder layers
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1, use_cpu=True,
                             report_to=[])
    trainer = multilabel_trainer_class()(model=model, args=args)
    trainer.layer_lr_decay = 0.5
    optimizer = trainer.create_optimizer()
    rate = {}
    decay = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rate[names[id(p)]] = group["lr"]
            decay[names[id(p)]] = group["weight_decay"]
    assert len(rate) == len(names)  # every parameter is in exactly one group
    assert rate["classifier.weight"] == rate["bert.pooler.dense.weight"] == pytest.approx(1e-3)
    assert rate["bert.encoder.layer.1.output.dense.weight"] == pytest.approx(5e-4)
    assert rate["bert.encoder.layer.0.output.dense.weight"] == pytest.approx(2.5e-4)
    assert rate["bert.embeddings.word_embeddings.weight"] == pytest.approx(1.25e-4)
    assert decay["bert.encoder.layer.0.output.dense.weight"] == 0.1
    assert decay["bert.encoder.layer.0.output.dense.bias"] == 0.0
    assert decay["bert.embeddings.LayerNorm.weight"] == 0.0
    # The Trainer logs the first group's rate: the peak one.
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-3)
    # The linear schedule scales every group alike: halfway through, every rate is half its own peak.
    peaks = [g["lr"] for g in optimizer.param_groups]
    scheduler = trainer.create_scheduler(num_training_steps=10, optimizer=optimizer)
    for _ in range(5):
        optimizer.step()
        scheduler.step()
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([p / 2 for p in peaks])


def test_without_decay_the_trainer_builds_its_usual_optimizer(tmp_path):
    from transformers import TrainingArguments

    from mlbert.trainer.hf_trainer import multilabel_trainer_class

    model = build_tiny_model(["a", "b"])
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, use_cpu=True, report_to=[])
    trainer = multilabel_trainer_class()(model=model, args=args)
    optimizer = trainer.create_optimizer()
    assert {g["lr"] for g in optimizer.param_groups} == {1e-3}
    assert len(optimizer.param_groups) == 2  # the Trainer's own: with and without weight decay


def test_layerwise_groups_skip_frozen_parameters():
    model = build_tiny_model(["a"])
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    groups = layerwise_parameter_groups(model, 1.0, 0.5, 0.0, set())
    names = [n for g in groups for n in g["names"]]
    assert "bert.embeddings.word_embeddings.weight" not in names
    assert len(names) == len(set(names)) == sum(1 for _, p in model.named_parameters() if p.requires_grad)


# --------------------------------------------------------------------------- weight averaging


def test_weight_average_is_the_hand_computed_ema():
    layer = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average = WeightAverage(0.9)
    average.start(layer)
    expected = 1.0
    for step, value in enumerate([2.0, 4.0, 8.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update(layer, step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
    assert decay_at(0.9, 1) == pytest.approx(2 / 11) and decay_at(0.9, 1000) == 0.9
    with average.swapped_in(layer):
        assert layer.weight.item() == pytest.approx(expected)
    assert layer.weight.item() == 8.0  # the training weights are back


def test_weight_average_resumes_from_a_checkpoint_folder(tmp_path):
    layer = torch.nn.Linear(2, 1)
    average = WeightAverage(0.99)
    average.start(layer)
    with torch.no_grad():
        layer.weight.fill_(3.0)
    average.save_training_weights(layer, str(tmp_path))
    assert (tmp_path / TRAINING_WEIGHTS_FILE).exists()
    # A resumed Trainer loads the checkpoint's model weights (the average) into the model ...
    with torch.no_grad():
        layer.weight.fill_(1.5)
    resumed = WeightAverage(0.99)
    assert resumed.resume(layer, str(tmp_path))
    # ... the training weights go back into the model and the average continues from the checkpoint's.
    assert torch.all(layer.weight == 3.0)
    assert torch.all(resumed.shadow["weight"] == 1.5)
    assert not WeightAverage(0.99).resume(layer, str(tmp_path / "elsewhere"))


def test_mlb_train_saves_the_averaged_weights(tmp_path, monkeypatch, capsys):
    """With --ema-decay the model written is the EMA of the weights after each step, not the last step's."""
    from safetensors.torch import load_file

    from mlbert.trainer import weight_average
    from mlbert.trainer.cli import main

    base = tmp_path / "base"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(["x", "y"], vocab_size=len(tokenizer), initializer_range=0.5).save_pretrained(str(base))
    tokenizer.save_pretrained(str(base))

    seen = []  # the training weights after each optimizer step, and at the start
    original_start, original_update = weight_average.WeightAverage.start, weight_average.WeightAverage.update

    def start(self, model):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        original_start(self, model)

    def update(self, model, step):
        seen.append({n: p.detach().clone() for n, p in model.named_parameters()})
        original_update(self, model, step)

    monkeypatch.setattr(weight_average.WeightAverage, "start", start)
    monkeypatch.setattr(weight_average.WeightAverage, "update", update)
    out = tmp_path / "model"
    try:
        main([str(a) for a in ["--train", SEMEVAL, "--base-model", base, "--max-steps", "5", "--eval-steps", "5",
                               "--batch-size", "8", "--max-length", "32", "--lr", "5e-2", "--ema-decay", "0.5",
                               "-o", out]])
    except SystemExit as exc:
        assert not exc.code, capsys.readouterr().err
    assert len(seen) == 6
    name = "classifier.weight"
    expected = seen[0][name].clone()
    for step, weights in enumerate(seen[1:], start=1):
        d = decay_at(0.5, step)
        expected = d * expected + (1 - d) * weights[name]
    saved = load_file(str(out / "model.safetensors"))[name]
    torch.testing.assert_close(saved, expected, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(saved, seen[-1][name], atol=1e-4)  # not the last step's weights
    training = json.loads((out / "mlb.json").read_text())["provenance"]["training"]
    assert training["ema_decay"] == 0.5 and training["loss"] == "bce" and training["layer_lr_decay"] == 1.0


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("changes,message", [
    ({"loss": "asl", "pos_weight": "balanced"}, "--pos-weight weights the BCE loss"),
    ({"loss": "hinge"}, "--loss 'hinge': use one of bce, asl"),
    ({"asl_gamma_neg": -1.0}, "--asl-gamma-neg must be at least 0"),
    ({"asl_clip": 1.0}, "--asl-clip must be in [0, 1)"),
    ({"lca_weight": 1.5}, "--lca-weight must be in [0, 1)"),
    ({"ema_decay": 1.0}, "--ema-decay must be in [0, 1)"),
    ({"layer_lr_decay": 0.0}, "--layer-lr-decay must be in (0, 1]"),
])
def test_recipe_options_are_checked_before_any_data_is_read(changes, message):
    opts = TrainOptions(output="x", train="does-not-exist.tsv", **changes)
    with pytest.raises(UsageError, match=re.escape(message)):
        opts.check()


def test_loss_settings_carry_the_options():
    opts = TrainOptions(output="x", train="t.tsv", loss="asl", asl_gamma_neg=2.0, asl_gamma_pos=0.0,
                        asl_clip=0.0, lca_weight=0.1)
    assert opts.loss_settings == LossSettings("asl", 2.0, 0.0, 0.0, 0.1)
    assert np.isclose(TrainOptions(output="x", train="t").loss_settings.asl_clip, 0.05)
