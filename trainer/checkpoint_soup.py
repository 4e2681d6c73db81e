"""``--average-checkpoints K``: a uniform soup of the best K validation checkpoints of one run.

Averaging the weights of several points of one fine-tuning trajectory (Izmailov et al.
2018, SWA; Wortsman et al. 2022, "Model soups") lands nearer the middle of the basin
than any one of them, and costs nothing at inference: the result is one ordinary set of
weights. The checkpoints averaged are the K with the best validation metric (the one that
picks the best checkpoint, ``--metric-for-best``), so evaluate often enough to have them
(``--eval-steps``).

The rule, fixed here: the soup is evaluated on validation after averaging and kept only
if its validation metric is at least the best single checkpoint's (lower for ``loss``);
otherwise the best checkpoint stays the model, as without the option. Either way
``metrics.json`` records the checkpoints, both figures and the decision
(``training.checkpoint_average``). The test split plays no part.

While training, ``keep_best_callback`` keeps the best K checkpoints on disk (and the latest,
for ``--resume``) instead of the Trainer's usual two.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from mlbert.trainer.outputs import checkpoint_step

WEIGHTS_FILE = "model.safetensors"


def ranked_steps(log_history: List[Dict[str, Any]], metric: str, greater_is_better: bool) -> List[int]:
    """Evaluated steps, best validation ``metric`` first (ties: the later step first)."""
    key = metric if metric.startswith("eval_") else f"eval_{metric}"
    scored = {int(entry["step"]): float(entry[key]) for entry in log_history if key in entry and "step" in entry}
    sign = -1.0 if greater_is_better else 1.0
    return sorted(scored, key=lambda step: (sign * scored[step], -step))


def keep_best_callback(k: int, metric: str, greater_is_better: bool):
    """Delete every checkpoint folder but the best ``k`` by validation ``metric``, the best and the latest."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            keep = set(ranked_steps(state.log_history, metric, greater_is_better)[:k])
            keep.add(state.global_step)
            best = checkpoint_step(state.best_model_checkpoint)
            if best is not None:
                keep.add(best)
            for name in os.listdir(args.output_dir):
                step = checkpoint_step(name)
                if step is not None and step not in keep:
                    shutil.rmtree(os.path.join(args.output_dir, name), ignore_errors=True)

    return KeepBest()


def average_weights(folders: List[str]) -> Dict[str, Any]:
    """The uniform mean of the checkpoints' floating-point tensors (others taken from the first)."""
    from safetensors.torch import load_file

    total: Dict[str, Any] = {}
    for folder in folders:
        for name, tensor in load_file(os.path.join(folder, WEIGHTS_FILE)).items():
            if name not in total:
                total[name] = tensor.double() if tensor.is_floating_point() else tensor
            elif tensor.is_floating_point():
                total[name] += tensor.double()
    first = load_file(os.path.join(folders[0], WEIGHTS_FILE))
    return {name: (value / len(folders)).to(first[name].dtype) if first[name].is_floating_point() else value
            for name, value in total.items()}


def load_weights(model: Any, weights: Dict[str, Any]) -> None:
    """Copy ``weights`` (keys as ``save_pretrained`` writes them) into ``model``; every one must land."""
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if unexpected:
        raise RuntimeError(f"checkpoint average: unknown weights {unexpected[:3]}")
    absent = [name for name in missing if name in dict(model.named_parameters())]
    if absent:
        raise RuntimeError(f"checkpoint average: no average for {absent[:3]}")


def average_checkpoints(trainer: Any, evaluations: Any, validation: Any, k: int, metric: str,
                        log: Callable[[str], None]) -> Tuple[Dict[str, Any], Optional[np.ndarray]]:
    """Average the best ``k`` checkpoints into ``trainer.model``, keep the soup by the rule above.

    Returns the record for ``metrics.json`` and, when the soup is kept, its validation
    probabilities (what the thresholds are then tuned on).
    """
    started = time.time()
    greater = metric != "loss"
    folder = trainer.args.output_dir
    steps = [s for s in ranked_steps(trainer.state.log_history, metric, greater)
             if os.path.exists(os.path.join(folder, f"checkpoint-{s}", WEIGHTS_FILE))][:k]
    record: Dict[str, Any] = {"requested": k, "checkpoints": steps, "metric": metric,
                              "best_single": trainer.state.best_metric, "soup": None, "kept": False}
    if len(steps) < 2:
        record["reason"] = f"{len(steps)} checkpoint(s) to average; evaluate more often (--eval-steps)"
        log(f"Checkpoint average skipped: {record['reason']}.")
        return record, None
    best_state = {name: tensor.detach().clone() for name, tensor in trainer.model.state_dict().items()}
    load_weights(trainer.model, average_weights([os.path.join(folder, f"checkpoint-{s}") for s in steps]))
    kept_probabilities = dict(evaluations.by_step)  # predict() passes compute_metrics, which stores
    try:
        output = trainer.predict(validation, metric_key_prefix="soup")
    finally:
        evaluations.by_step = kept_probabilities
    soup = float(output.metrics[f"soup_{metric}"])
    best = float(trainer.state.best_metric) if trainer.state.best_metric is not None else None
    kept = best is None or (soup >= best if greater else soup <= best)
    record.update(soup=soup, kept=kept, seconds=round(time.time() - started, 1))
    log(f"Average of checkpoints {', '.join(map(str, steps))}: validation {metric} {soup:.4f} against the best "
        f"single checkpoint's {best if best is None else round(best, 4)}: "
        + ("kept." if kept else "not kept, the best checkpoint stays."))
    if not kept:
        trainer.model.load_state_dict(best_state)
        return record, None
    return record, 1.0 / (1.0 + np.exp(-np.asarray(output.predictions, dtype=np.float64)))
