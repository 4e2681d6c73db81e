"""A Hugging Face model card (``README.md``) for an mlb checkpoint folder.

Why: a checkpoint folder with a card in the hub convention can be pushed as it is, and
the card tells the next reader what the model predicts, at which thresholds, how well,
how it was trained and where it should not be used (emoji preprocessing, English only,
the training domain). The card's YAML front matter carries ``model-index`` results taken
from ``metrics.json`` so the hub shows them.

The YAML is written by a small emitter here (strings JSON-quoted, which YAML reads as
double-quoted scalars), so writing a card needs no YAML library.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..batch.modelfile import CheckpointConfig

from .report import MAIN_METRICS, _as_float, format_number, metric_sets, set_title

CARD_FILE = "README.md"

# Local stand-ins with known hub names: the packaged base model and the datasets under shared/data.
_KNOWN_BASE_MODELS = (
    (re.compile(r"all[-_]minilm[-_]l6[-_]v2", re.IGNORECASE), "sentence-transformers/all-MiniLM-L6-v2"),
)
_KNOWN_DATASETS = (
    (re.compile(r"go[-_]?emotions", re.IGNORECASE), "google-research-datasets/go_emotions"),
    (re.compile(r"sem[-_]?eval[-_]?2018|2018[-_]e[-_]?c", re.IGNORECASE), "sem_eval_2018_task_1"),
)
_METRIC_TYPES = {
    "samples_jaccard": ("jaccard", "Samples Jaccard", {"average": "samples"}),
    "micro_f1": ("f1", "Micro F1", {"average": "micro"}),
    "macro_f1": ("f1", "Macro F1", {"average": "macro"}),
    "exact_match": ("exact_match", "Exact match (subset accuracy)", None),
    "micro_roc_auc": ("roc_auc", "Micro ROC-AUC", {"average": "micro"}),
    "macro_roc_auc": ("roc_auc", "Macro ROC-AUC", {"average": "macro"}),
}
_SPLITS = (("test", "test"), ("validation", "validation"), ("valid", "validation"), ("dev", "validation"),
           ("eval", "validation"))


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


# --------------------------------------------------------------------------- facts


def _hub_name(value: Optional[str], known: Sequence[Tuple[Any, str]]) -> Optional[str]:
    if not value:
        return None
    for pattern, name in known:
        if pattern.search(str(value)):
            return name
    return None


def base_model_name(provenance: Mapping[str, Any], folder: str) -> Optional[str]:
    """The base model's hub name: from provenance, else config.json's ``_name_or_path``.

    A local folder of a known packaged model maps to its hub name; another local path is
    not a hub name and is left out of the metadata (it is still shown in the body).
    """
    candidates = [provenance.get(k) for k in ("base_model", "base_model_name", "model_name_or_path", "model")]
    try:
        with open(os.path.join(folder, "config.json"), "r", encoding="utf-8") as f:
            candidates.append(json.load(f).get("_name_or_path"))
    except (OSError, ValueError):
        pass
    for value in candidates:
        if not isinstance(value, str) or not value:
            continue
        known = _hub_name(value, _KNOWN_BASE_MODELS)
        if known:
            return known
        if re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", value) and not os.path.exists(value):
            return value
    return None


def dataset_names(provenance: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    """(hub names for the metadata, every data source as recorded) from provenance."""
    sources: List[str] = []
    data = provenance.get("data")
    if isinstance(data, Mapping):  # mlb-train: {"train": {"source": ..., "rows": ...}, ...}
        for role in ("train", "validation", "test"):
            entry = data.get(role)
            if isinstance(entry, Mapping) and isinstance(entry.get("source"), str):
                sources.append(entry["source"])
    dataset = provenance.get("dataset")
    if isinstance(dataset, Mapping) and isinstance(dataset.get("name"), str):
        sources.insert(0, dataset["name"])
    for key in ("dataset", "datasets", "train_file", "train", "train_path", "data", "validation_file", "test_file"):
        value = provenance.get(key)
        if isinstance(value, str) and value:
            sources.append(value)
        elif isinstance(value, list):
            sources += [str(v) for v in value if v]
    hub: List[str] = []
    for s in sources:
        name = _hub_name(s, _KNOWN_DATASETS)
        if name is None and re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s) and not os.path.exists(s):
            name = s
        if name and name not in hub:
            hub.append(name)
    return hub, list(dict.fromkeys(sources))


def training_command(provenance: Mapping[str, Any]) -> Optional[str]:
    command = provenance.get("command") or provenance.get("argv")
    if isinstance(command, list):
        return " ".join(shlex.quote(str(c)) for c in command)
    if isinstance(command, str) and command:
        return command
    return None


def _split_of(set_name: str) -> Tuple[str, str]:
    """('test', 'tuned') from 'test / tuned'; the split is the first part naming one."""
    parts = [p.strip() for p in set_name.split("/")]
    for i, part in enumerate(parts):
        low = part.lower()
        for word, split in _SPLITS:
            if low == word or low.startswith(word + "_") or low.endswith("_" + word):
                rest = parts[:i] + parts[i + 1:]
                return split, " / ".join(rest)
    return "validation", " / ".join(parts)


def _setting_name(setting: str) -> str:
    return {"at_0.5": "threshold 0.5", "tuned": "tuned thresholds"}.get(setting, setting)


def model_index_results(metrics: Any, dataset_name: str, dataset_type: str) -> List[Dict[str, Any]]:
    """``model-index`` results: one entry per split, every metric of every set in ``metrics.json``."""
    by_split: Dict[str, List[Dict[str, Any]]] = {}
    for set_name, values in metric_sets(metrics).items():
        split, setting = _split_of(set_name)
        for key, _ in MAIN_METRICS:
            value = _as_float(values.get(key))
            if value is None or value != value:
                continue
            mtype, mname, args = _METRIC_TYPES[key]
            entry: Dict[str, Any] = {"type": mtype, "value": round(value, 4),
                                     "name": f"{mname} ({_setting_name(setting)})" if setting and setting != "metrics" else mname}
            if args:
                entry["args"] = dict(args)
            by_split.setdefault(split, []).append(entry)
    results = []
    for split in sorted(by_split, key=lambda s: (s != "test", s)):
        results.append({
            "task": {"type": "text-classification", "name": "Multi-label text classification"},
            "dataset": {"name": dataset_name, "type": dataset_type, "split": split},
            "metrics": by_split[split],
        })
    return results


# --------------------------------------------------------------------------- card


def build_model_card(folder: str, metrics: Any = None, model_name: Optional[str] = None) -> str:
    """The card's text for the checkpoint in ``folder`` (``mlb.json`` required)."""
    config = CheckpointConfig.load(folder)
    if metrics is None:
        try:
            with open(os.path.join(folder, "metrics.json"), "r", encoding="utf-8") as f:
                metrics = json.load(f)
        except (OSError, ValueError):
            metrics = None
    prov = config.provenance
    name = model_name or prov.get("model_name") or os.path.basename(os.path.abspath(folder))
    base = base_model_name(prov, folder)
    hub_datasets, sources = dataset_names(prov)
    dataset_label = hub_datasets[0] if hub_datasets else (
        os.path.basename(os.path.dirname(os.path.abspath(sources[0]))) if sources else "custom")
    command = training_command(prov)
    language = prov.get("language") or "en"

    meta: Dict[str, Any] = {
        "license": prov.get("license") or "apache-2.0",
        "language": [language] if isinstance(language, str) else list(language),
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "multi-label-classification", "mlb", "onnx-exportable"],
    }
    if base:
        meta["base_model"] = base
    if hub_datasets:
        meta["datasets"] = hub_datasets
    results = model_index_results(metrics, dataset_label, hub_datasets[0] if hub_datasets else dataset_label)
    if results:
        meta["model-index"] = [{"name": str(name), "results": results}]

    pre = config.preprocessing
    lines = ["---", to_yaml(meta), "---", "", f"# {name}", ""]
    lines += [
        f"A multi-label text classifier: for each text it gives an independent probability (sigmoid) for each of "
        f"{len(config.label_names)} labels, and a label is predicted when its probability reaches the label's "
        f"threshold. Fine-tuned from `{base or prov.get('base_model') or 'an unrecorded base model'}`"
        + (f" on {', '.join('`' + s + '`' for s in sources)}" if sources else "")
        + " with [mlb](https://pypi.org/project/mlb/) (`mlb-train`).",
        "",
        "## Labels and thresholds",
        "",
        f"Thresholds were chosen by `{config.threshold_objective}` "
        "(see `mlb.json`; `none` means 0.5 was kept).",
        "",
    ]
    per_label = _per_label_f1(metrics)
    header = "| label | threshold |" + (f" F1 ({per_label[0]}) | support |" if per_label else "")
    lines += [header, "|---|---|" + ("---|---|" if per_label else "")]
    for label, threshold in zip(config.label_names, config.thresholds):
        row = f"| {label} | {threshold:.3f} |"
        if per_label:
            scores = per_label[1].get(label, {})
            row += f" {format_number(_as_float(scores.get('f1')))} | {_support(scores.get('support'))} |"
        lines.append(row)
    lines.append("")

    sets = metric_sets(metrics) if metrics is not None else {}
    if sets:
        names = list(sets)
        lines += ["## Evaluation", "", "From `metrics.json` written by `mlb-train`.", "",
                  "| metric | " + " | ".join(set_title(n) for n in names) + " |", "|---|" + "---|" * len(names)]
        for key, display in MAIN_METRICS:
            lines.append(f"| {display} | " + " | ".join(format_number(_as_float(sets[n].get(key))) for n in names) + " |")
        lines.append("")

    lines += [
        "## How to use",
        "",
        "Export to one ONNX file that carries the labels, thresholds, preprocessing and tokenizer, then classify files:",
        "",
        "```bash",
        "mlb-export . -o model.onnx",
        "mlb-batch texts.csv -m model.onnx -o labels.jsonl",
        "```",
        "",
        "With transformers, apply the same preprocessing first (see below), then a sigmoid and the thresholds:",
        "",
        "```python",
        "import json, torch",
        "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
        "from batch.preprocess import Preprocessing",
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
        f"- Texts are cut at {config.max_length} tokens.",
        "- Thresholds were tuned on the validation data; rare labels have few examples, so their thresholds and "
        "scores are uncertain (see the support column).",
        "- Labels reflect annotators' judgements of the text; they are not a measure of what a writer felt, and the "
        "model should not be used to make decisions about individuals.",
        "",
        "## Training",
        "",
    ]
    if command:
        lines += ["The exact command that trained this model:", "", "```bash", command, "```", ""]
    else:
        lines += ["The training command was not recorded in `mlb.json`.", ""]
    facts = _flat_facts(prov)
    if facts:
        lines += ["| provenance | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in sorted(facts.items())] + [""]
    return "\n".join(lines)


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
    f = _as_float(value)
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
        split, setting = _split_of(item[0])
        return (split != "test", "0.5" in setting or "default" in setting)

    name, scores = sorted(found, key=rank)[0]
    return name, {str(k): v for k, v in scores.items() if isinstance(v, Mapping)}


def write_model_card(folder: str, metrics: Any = None, model_name: Optional[str] = None) -> str:
    """Write ``README.md`` in the checkpoint folder and return its path."""
    text = build_model_card(folder, metrics=metrics, model_name=model_name)
    path = os.path.join(folder, CARD_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
