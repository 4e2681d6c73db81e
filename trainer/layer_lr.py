"""Layer-wise learning-rate decay (LLRD): optimizer parameter groups, faster at the top than at the bottom.

The head and the top encoder layers have the most to learn for a new task; the
embeddings and lower layers hold general features that a large update only disturbs.
LLRD (Howard and Ruder 2018, "discriminative fine-tuning"; Sun et al. 2019, "How to
Fine-Tune BERT for Text Classification"; Clark et al. 2020, ELECTRA) gives depth ``d``
the rate ``lr * decay ** (top - d)``: the head and pooler get ``lr``, encoder layer ``i``
(0-based, of ``n``) gets ``lr * decay ** (n - i)``, the embeddings ``lr * decay ** (n + 1)``.
The Trainer's schedule (warm-up, linear decay) then scales every group alike.
"""

from __future__ import annotations

import re
from typing import Any, Collection, Dict, List

# ``encoder.layer.3.``, ``transformer.layer.3.`` (DistilBERT), ``layers.3.`` (ModernBERT).
LAYER_INDEX = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def parameter_depth(name: str, num_layers: int) -> int:
    """0 for embeddings, ``i + 1`` for encoder layer ``i``, ``num_layers + 1`` for what sits above (pooler, head)."""
    match = LAYER_INDEX.search(name)
    if match:
        return min(int(match.group(1)), num_layers - 1) + 1
    if "embeddings" in name.split("."):
        return 0
    return num_layers + 1


def layerwise_parameter_groups(
    model: Any, lr: float, decay: float, weight_decay: float, decay_parameter_names: Collection[str]
) -> List[Dict[str, Any]]:
    """Optimizer parameter groups, one per (depth, with/without weight decay), top group first.

    ``decay_parameter_names`` are the parameters weight decay applies to (the Trainer's
    rule: not biases, not LayerNorm). The top group comes first because the Trainer logs
    the first group's rate as ``learning_rate``.
    """
    num_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    top = num_layers + 1
    groups: Dict[tuple, Dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        depth = parameter_depth(name, num_layers) if num_layers else top
        decayed = name in decay_parameter_names
        key = (depth, decayed)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": lr * decay ** (top - depth),
                "weight_decay": weight_decay if decayed else 0.0,
            }
        groups[key]["params"].append(param)
        groups[key]["names"].append(name)
    return [groups[key] for key in sorted(groups, key=lambda k: (-k[0], not k[1]))]
