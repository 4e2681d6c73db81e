"""A Hugging Face model card (``README.md``) for an mlb checkpoint folder.

Why: a checkpoint folder with a card in the hub convention can be pushed as it is, and
the card tells the next reader what the model predicts, at which thresholds, how well,
how it was trained and where it should not be used (emoji preprocessing, English only,
the training domain). The facts and the front matter (``model-index`` results from
``metrics.json``, so the hub shows them) come from ``card_metadata``; the body is here.

The YAML is written by a small emitter here (strings JSON-quoted, which YAML reads as
double-quoted scalars), so writing a card needs no YAML library.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mlbert.trainer.report.card_metadata import CardFacts, card_facts, card_metadata, split_of
from mlbert.trainer.report.document import atomic_write, format_number
from mlbert.trainer.report.metric_sets import MAIN_METRICS, as_float, metric_sets, set_title

CARD_FILE = "README.md"


# --------------------------------------------------------------------------- YAML


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(round(value, 6)) if value == value and abs(value) != float("inf") else "null"
    # A JSON string is a YAML double-quoted scalar, except that YAML does not join JSON's
    # surrogate pairs: keep characters as they are and escape only the unprintable ones.
    text = json.dumps(str(value), ensure_ascii=False)
    return "".join(c if c.isprintable() else (f"\\u{ord(c):04x}" if ord(c) < 0x10000 else f"\\U{ord(c):08x}")
                   for c in text)


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (enough for model card metadata)."""
    pad = " " * indent
    lines: List[str] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            key = _yaml_scalar(str(k)) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", str(k)) else str(k)
            if isinstance(v, (Mapping, list)) and v:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, (Mapping, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(v, Mapping) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (Mapping, list)) and item:
                inner = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {inner[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))
    return "\n".join(lines)


# --------------------------------------------------------------------------- card


def build_model_card(folder: str, metrics: Any = None, model_name: Optional[str] = None) -> str:
    """The card's text for the checkpoint in ``folder`` (``mlb.json`` required)."""
    facts = card_facts(folder, metrics, model_name)
    lines = ["---", to_yaml(card_metadata(facts)), "---", "", f"# {facts.name}", ""]
    lines += _summary_lines(facts)
    lines += _labels_lines(facts)
    lines += _evaluation_lines(facts.metrics)
    lines += usage_lines(facts.config.head)
    lines += _limits_lines(facts)
    lines += _training_lines(facts)
    return "\n".join(lines)


def _summary_lines(facts: CardFacts) -> List[str]:
    config, prov, sources = facts.config, facts.config.provenance, facts.sources
    return [
        f"A multi-label text classifier: for each text it gives an independent probability (sigmoid) for each of "
        f"{len(config.label_names)} labels, and a label is predicted when its probability reaches the label's "
        f"threshold. Fine-tuned from `{facts.base or prov.get('base_model') or 'an unrecorded base model'}`"
        + (f" on {', '.join('`' + s + '`' for s in sources)}" if sources else "")
        + " with [mlbert](https://pypi.org/project/mlbert/) (`mlb-train`).",
        "",
    ]


def _labels_lines(facts: CardFacts) -> List[str]:
    """Each label's threshold, with its F1 and support where ``metrics.json`` has them."""
    config = facts.config
    lines = [
        "## Labels and thresholds",
        "",
        f"Thresholds were chosen by `{config.threshold_objective}` "
        "(see `mlb.json`; `none` means 0.5 was kept).",
        "",
    ]
    per_label = _per_label_f1(facts.metrics)
    header = "| label | threshold |" + (f" F1 ({per_label[0]}) | support |" if per_label else "")
    lines += [header, "|---|---|" + ("---|---|" if per_label else "")]
    for label, threshold in zip(config.label_names, config.thresholds):
        row = f"| {label} | {threshold:.3f} |"
        if per_label:
            scores = per_label[1].get(label, {})
            row += f" {format_number(as_float(scores.get('f1')))} | {_support(scores.get('support'))} |"
        lines.append(row)
    lines.append("")
    return lines


def _evaluation_lines(metrics: Any) -> List[str]:
    sets = metric_sets(metrics) if metrics is not None else {}
    if not sets:
        return []
    names = list(sets)
    lines = ["## Evaluation", "", "From `metrics.json` written by `mlb-train`.", "",
             "| metric | " + " | ".join(set_title(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for key, display in MAIN_METRICS:
        lines.append(f"| {display} | " + " | ".join(format_number(as_float(sets[n].get(key))) for n in names) + " |")
    lines.append("")
    return lines


# Run as they stand by tests/test_model_card.py against a checkpoint folder, so they keep
# matching the commands' usage.
USAGE_LINES: List[str] = [
    "## How to use",
    "",
    "Export to one ONNX file that carries the labels, thresholds, preprocessing and tokenizer, then classify files:",
    "",
    "```bash",
    "mlb-export . model.onnx",
    "mlb-batch texts.csv -m model.onnx -o labels.jsonl",
    "```",
    "",
    "With transformers, apply the same preprocessing first (see below), then a sigmoid and the thresholds:",
    "",
    "```python",
    "import json, torch",
    "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
    "from mlbert.preprocess import Preprocessing",
    "",
    "cfg = json.load(open(\"mlb.json\"))",
    "pre = Preprocessing.from_dict(cfg[\"preprocessing\"])",
    "tok = AutoTokenizer.from_pretrained(\".\")",
    "model = AutoModelForSequenceClassification.from_pretrained(\".\").eval()",
    "batch = tok(pre.apply([\"what a day 😂\"]), truncation=True, max_length=cfg[\"max_length\"], padding=True, return_tensors=\"pt\")",
    "with torch.no_grad():",
    "    probs = torch.sigmoid(model(**batch).logits)[0]",
    "print([n for n, p, t in zip(cfg[\"label_names\"], probs.tolist(), cfg[\"thresholds\"]) if p >= t])",
    "```",
    "",
    "## Intended use",
    "",
    "Tagging short English texts of the kind it was trained on with the labels above, in bulk, where a wrong "
    "label on some texts is acceptable (analytics, routing, search facets). Check it on your own labelled data "
    "with `mlb-eval model.onnx your_data.csv` before relying on it.",
    "",
]


def usage_lines(head: Optional[Dict[str, Any]]) -> List[str]:
    """``USAGE_LINES`` for the model's head: mlb's own heads (mean pooling, label tokens) need mlbert's model
    class registered (plain transformers refuses their model type), and label tokens need the label segment."""
    pooling = (head or {}).get("pooling", "cls")
    if pooling == "cls":
        return list(USAGE_LINES)
    lines = []
    for line in USAGE_LINES:
        if line == "from mlbert.preprocess import Preprocessing":
            lines += [line, "from mlbert.trainer.encoder_classifier import register",
                      f"register()  # this model's {pooling} head is mlbert's own model class"]
        elif line.startswith("batch = tok(") and pooling == "label-tokens":
            lines.append("batch = tok([cfg[\"label_segment\"]], pre.apply([\"what a day 😂\"]), truncation=\"only_second\", "
                         "max_length=cfg[\"max_length\"], padding=True, return_tensors=\"pt\")")
        else:
            lines.append(line)
    return lines


def _limits_lines(facts: CardFacts) -> List[str]:
    pre, sources, language = facts.config.preprocessing, facts.sources, facts.language
    return [
        "## Limits",
        "",
        f"- Preprocessing is part of the model: emoji={pre.emoji}, mentions={pre.mentions}, urls={pre.urls}. "
        "The base vocabulary maps emoji to `[UNK]`, so with emoji=words they are spelled out by their Unicode names; "
        "feeding raw text to the transformers model without the same step gives different (worse) results. "
        "`mlb-batch` applies it from the ONNX header.",
        f"- English only{' (' + language + ')' if language != 'en' else ''}: the base model and training data are "
        "English; other languages are not supported.",
        "- Domain: the training texts"
        + (f" ({', '.join('`' + os.path.basename(s) + '`' for s in sources)})" if sources else "")
        + " come from one source and style; expect lower scores on other domains (reviews, news, subtitles).",
        f"- Texts are cut at {facts.config.max_length} tokens.",
        "- Thresholds were tuned on the validation data; rare labels have few examples, so their thresholds and "
        "scores are uncertain (see the support column).",
        "- Labels reflect annotators' judgements of the text; they are not a measure of what a writer felt, and the "
        "model should not be used to make decisions about individuals.",
        "",
    ]


def _training_lines(facts: CardFacts) -> List[str]:
    """The exact training command and every recorded provenance fact."""
    lines = ["## Training", ""]
    if facts.command:
        lines += ["The exact command that trained this model:", "", "```bash", facts.command, "```", ""]
    else:
        lines += ["The training command was not recorded in `mlb.json`.", ""]
    flat = _flat_facts(facts.config.provenance)
    if flat:
        lines += ["| provenance | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(flat.items())] + [""]
    return lines


def _flat_facts(provenance: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Provenance as ``key.sub: value`` rows (scalars only; the command is shown on its own)."""
    facts: Dict[str, Any] = {}
    for k, v in provenance.items():
        if k in ("command", "argv") and not prefix:
            continue
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            facts.update(_flat_facts(v, key + "."))
        elif isinstance(v, (str, int, float, bool)):
            facts[key] = str(v).replace("|", "\\|")
    return facts


def _support(value: Any) -> str:
    f = as_float(value)
    return str(int(f)) if f is not None else "n/a"


def _per_label_f1(metrics: Any) -> Optional[Tuple[str, Dict[str, Mapping[str, Any]]]]:
    """The per-label scores to show in the labels table: test split first, model thresholds first."""
    if not isinstance(metrics, Mapping):
        return None
    found: List[Tuple[str, Mapping[str, Any]]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            pl = node.get("per_label")
            if isinstance(pl, Mapping) and pl:
                found.append((path or "metrics", pl))
            for k, v in node.items():
                if k not in ("per_label", "by_objective") and isinstance(v, Mapping):
                    walk(v, f"{path} / {k}" if path else str(k))

    walk(metrics, "")
    if not found:
        return None

    def rank(item: Tuple[str, Mapping[str, Any]]) -> Tuple[int, int]:
        split, setting = split_of(item[0])
        return (split != "test", "0.5" in setting or "default" in setting)

    name, scores = sorted(found, key=rank)[0]
    return name, {str(k): v for k, v in scores.items() if isinstance(v, Mapping)}


def write_model_card(folder: str, metrics: Any = None, model_name: Optional[str] = None) -> str:
    """Write ``README.md`` in the checkpoint folder and return its path."""
    path = os.path.join(folder, CARD_FILE)
    atomic_write(path, build_model_card(folder, metrics=metrics, model_name=model_name))
    return path
