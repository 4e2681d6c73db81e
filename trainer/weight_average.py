"""An exponential moving average (EMA) of the weights, evaluated and saved in place of the raw weights.

The average of the weights over the last few hundred steps sits closer to the middle of
the loss basin than the last step's weights (Polyak and Juditsky 1992; Izmailov et al.
2018, "Averaging Weights Leads to Wider Optima"), which matters most when training stops
early while the learning rate is still high. It costs one copy of the weights and a
multiply-add per step, and nothing at inference: the saved checkpoint is the average, one
ordinary set of weights.

How it runs inside the Trainer (``hf_trainer.MultiLabelTrainer``): the average is updated
after every optimizer step; evaluation and checkpoint saving swap it in and back out, so
early stopping and the best checkpoint judge the averaged weights and the checkpoints
hold them; each checkpoint also holds the raw training weights
(``TRAINING_WEIGHTS_FILE``) so that ``--resume`` continues both.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Dict, Iterator, Optional

TRAINING_WEIGHTS_FILE = "training_weights.safetensors"


def decay_at(decay: float, step: int) -> float:
    """The decay used at ``step``: ``min(decay, (1 + step) / (10 + step))``.

    The warm-up (TensorFlow's ``ExponentialMovingAverage`` with ``num_updates``) keeps the
    first steps from being dominated by the freshly initialised head.
    """
    return min(decay, (1.0 + step) / (10.0 + step))


class WeightAverage:
    """The EMA of a model's trainable parameters, in fp32, on the parameters' device."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.decay = decay
        self.shadow: Optional[Dict[str, Any]] = None

    def start(self, model: Any) -> None:
        """Begin the average at the model's current weights."""
        self.shadow = {
            name: param.detach().clone().float() for name, param in model.named_parameters() if param.requires_grad
        }

    @property
    def active(self) -> bool:
        return self.shadow is not None

    def stop(self) -> None:
        """Forget the average: swaps are no-ops from now on (after training the model holds the kept weights)."""
        self.shadow = None

    def update(self, model: Any, step: int) -> None:
        """``shadow = d * shadow + (1 - d) * weights`` with ``d = decay_at(decay, step)``."""
        import torch

        if self.shadow is None:
            return
        weight = 1.0 - decay_at(self.decay, step)
        with torch.no_grad():
            for name, param in model.named_parameters():
                average = self.shadow.get(name)
                if average is not None:
                    average.lerp_(param.detach().float(), weight)

    def swap(self, model: Any) -> None:
        """Exchange the model's weights and the average (twice restores both)."""
        import torch

        if self.shadow is None:
            return
        with torch.no_grad():
            for name, param in model.named_parameters():
                average = self.shadow.get(name)
                if average is not None:
                    held = param.detach().clone()
                    param.copy_(average.to(param.dtype))
                    average.copy_(held.float())

    @contextlib.contextmanager
    def swapped_in(self, model: Any) -> Iterator[None]:
        """The averaged weights in the model for the ``with`` block, the training weights after it."""
        self.swap(model)
        try:
            yield
        finally:
            self.swap(model)

    def save_training_weights(self, model: Any, folder: str) -> None:
        """The raw training weights (the model holds them outside ``swapped_in``) for ``--resume``."""
        from safetensors.torch import save_file

        tensors = {
            name: param.detach().contiguous().cpu() for name, param in model.named_parameters() if param.requires_grad
        }
        save_file(tensors, os.path.join(folder, TRAINING_WEIGHTS_FILE))

    def resume(self, model: Any, folder: str) -> bool:
        """Continue from a checkpoint: its model weights (the average) become the average, its
        training weights go back into the model. False when the checkpoint has no training weights."""
        import torch
        from safetensors.torch import load_file

        path = os.path.join(folder, TRAINING_WEIGHTS_FILE)
        self.start(model)
        if not os.path.exists(path):
            return False
        tensors = load_file(path)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name in tensors:
                    param.copy_(tensors[name].to(device=param.device, dtype=param.dtype))
        return True
