"""What a model card states about a checkpoint, and its YAML front matter.

``card_facts`` gathers, once, what the card says: the checkpoint's ``mlb.json``, its
``metrics.json``, and the hub names of the base model and datasets (local copies of
known ones are mapped to their hub names). ``card_metadata`` turns them into the front
matter (as a dict; ``model_card.to_yaml`` writes it), whose ``model-index`` results the
hub shows.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mlbert.modelfile import CheckpointConfig

from mlbert.trainer.report.metric_sets import MAIN_METRICS, as_float, metric_sets

# Local copies with known hub names: the packaged base model, and data files or folders named after a
# public dataset (goemotions/train.tsv, a SemEval-2018 E-c export), so the card can link the hub entries.
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


def split_of(set_name: str) -> Tuple[str, str]:
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
        split, setting = split_of(set_name)
        for key, _ in MAIN_METRICS:
            value = as_float(values.get(key))
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


# --------------------------------------------------------------------------- front matter


@dataclass
class CardFacts:
    """What the card says about one checkpoint folder, gathered once."""

    config: CheckpointConfig
    metrics: Any  # metrics.json as loaded, or None
    name: str
    base: Optional[str]  # hub name of the base model, when known
    hub_datasets: List[str]
    sources: List[str]  # every data source as recorded in provenance
    command: Optional[str]
    language: Any

    @property
    def dataset_label(self) -> str:
        if self.hub_datasets:
            return self.hub_datasets[0]
        return os.path.basename(os.path.dirname(os.path.abspath(self.sources[0]))) if self.sources else "custom"


def card_facts(folder: str, metrics: Any = None, model_name: Optional[str] = None) -> CardFacts:
    """Read ``mlb.json`` (required) and ``metrics.json`` (optional) and derive the card's facts."""
    config = CheckpointConfig.load(folder)
    if metrics is None:
        try:
            with open(os.path.join(folder, "metrics.json"), "r", encoding="utf-8") as f:
                metrics = json.load(f)
        except (OSError, ValueError):
            metrics = None
    prov = config.provenance
    hub_datasets, sources = dataset_names(prov)
    return CardFacts(
        config=config,
        metrics=metrics,
        name=model_name or prov.get("model_name") or os.path.basename(os.path.abspath(folder)),
        base=base_model_name(prov, folder),
        hub_datasets=hub_datasets,
        sources=sources,
        command=training_command(prov),
        language=prov.get("language") or "en",
    )


def card_metadata(facts: CardFacts) -> Dict[str, Any]:
    """The YAML front matter: license, language, tags, base model, datasets and ``model-index`` results."""
    prov = facts.config.provenance
    language = facts.language
    meta: Dict[str, Any] = {
        "license": prov.get("license") or "apache-2.0",
        "language": [language] if isinstance(language, str) else list(language),
        "library_name": "transformers",
        "pipeline_tag": "text-classification",
        "tags": ["text-classification", "multi-label-classification", "mlb", "onnx-exportable"],
    }
    if facts.base:
        meta["base_model"] = facts.base
    if facts.hub_datasets:
        meta["datasets"] = facts.hub_datasets
    dataset_type = facts.hub_datasets[0] if facts.hub_datasets else facts.dataset_label
    results = model_index_results(facts.metrics, facts.dataset_label, dataset_type)
    if results:
        meta["model-index"] = [{"name": str(facts.name), "results": results}]
    return meta
