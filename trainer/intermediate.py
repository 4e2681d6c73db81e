"""An intermediate task (``--intermediate-train``/``--intermediate-dataset``): fine-tune on other labelled data
first, then on the target with a new head, the encoder carried over.

Intermediate-task transfer (Phang et al. 2018, "Sentence Encoders on STILTs"; Pruksachatkun
et al. 2020) gives a small encoder a first pass over a larger labelled set of a related
task (the shipped GoEmotions, 43k comments, 28 emotions, before a smaller emotion set).

The two stages are two ordinary mlb-train runs:

1. ``OUTPUT/intermediate/``: the intermediate data with its own labels, from the base model,
   with every setting of the run but its length (``--intermediate-epochs``,
   ``--intermediate-max-steps``) and without checkpoint averaging or a test split. It is a
   complete mlb model of that task; its ``checkpoints/`` are deleted once it is finished.
2. ``OUTPUT/``: the target data from ``OUTPUT/intermediate`` as the base model: a new head for
   the target labels (a different label set), the encoder and, for a BERT-style head, the
   pooler the first stage trained (``--pooler keep``: it is no longer the untrained one that
   ``reinit`` is for). It is what ``mlb-train --base-model OUTPUT/intermediate --pooler keep``
   would do.

The second stage's ``metrics.json`` and ``mlb.json`` record the first (``intermediate``: its
data, labels, steps, validation scores and seconds) and ``training.all_stages_seconds``,
the time of the whole run: the first stage counts in the run's budget. ``--resume``
continues whichever stage was interrupted.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from typing import Any, Callable, Dict

from mlbert.trainer.outputs import CHECKPOINTS_DIR, last_checkpoint, prepare_output, write_json
from mlbert.trainer.train_options import TrainOptions

INTERMEDIATE_DIR = "intermediate"
Log = Callable[[str], None]
Stage = Callable[[TrainOptions, Log], Dict[str, Any]]


def stage_options(opts: TrainOptions) -> TrainOptions:
    """The first stage's options: the intermediate data and length, everything else the run's."""
    stage = opts.intermediate
    assert stage is not None
    return replace(
        opts, **stage.data_fields(), output=os.path.join(opts.output, INTERMEDIATE_DIR), test=None,
        epochs=stage.epochs, max_steps=stage.max_steps, eval_steps=None, average_checkpoints=1,
        intermediate=None, extra_record={},
    )


def target_options(opts: TrainOptions, record: Dict[str, Any]) -> TrainOptions:
    """The second stage's options: the run's, from the first stage's model, its pooler kept."""
    return replace(opts, base_model=os.path.join(opts.output, INTERMEDIATE_DIR), pooler="keep", intermediate=None,
                   extra_record={"intermediate": record})


def train_in_two_stages(opts: TrainOptions, log: Log, train_stage: Stage) -> Dict[str, Any]:
    """Both stages (each resumed or skipped as ``--resume`` finds it); the target's metrics, with the record."""
    started = time.time()
    first = stage_options(opts)
    if not opts.resume:  # refuse an occupied OUTPUT before the first stage's minutes are spent
        prepare_output(opts)
        prepare_output(first)
    if os.path.exists(os.path.join(first.output, "metrics.json")) and opts.resume:
        log(f"Intermediate stage already finished in {first.output}; continuing with the target.")
    else:
        resume_first = opts.resume and last_checkpoint(os.path.join(first.output, CHECKPOINTS_DIR)) is not None
        log(f"Intermediate stage: {first.train or first.dataset} -> {first.output}")
        train_stage(replace(first, resume=resume_first, overwrite=not resume_first), log)
        shutil.rmtree(os.path.join(first.output, CHECKPOINTS_DIR), ignore_errors=True)
    record = stage_record(first.output)
    second = target_options(opts, record)
    resume_second = opts.resume and last_checkpoint(os.path.join(opts.output, CHECKPOINTS_DIR)) is not None
    log(f"Target stage: {opts.train or opts.dataset} from {second.base_model}")
    metrics = train_stage(replace(second, resume=resume_second, overwrite=not resume_second), log)
    if metrics:
        training = metrics["training"]
        training["all_stages_seconds"] = round(record["total_seconds"] + training["total_seconds"], 1)
        training["wall_seconds"] = round(time.time() - started, 1)
        write_json(os.path.join(opts.output, "metrics.json"), metrics)
        log(f"Both stages: {training['all_stages_seconds']:.0f} s (intermediate {record['total_seconds']:.0f} s).")
    return metrics


def stage_record(folder: str) -> Dict[str, Any]:
    """What the target's files say about the finished first stage (read from its own files)."""
    with open(os.path.join(folder, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    with open(os.path.join(folder, "mlb.json"), encoding="utf-8") as f:
        provenance = json.load(f).get("provenance", {})
    training, validation = metrics["training"], metrics["validation"]["by_objective"]
    return {
        "output": INTERMEDIATE_DIR,
        "base_model": provenance.get("base_model"),
        "data": provenance.get("data"),
        "dataset": provenance.get("dataset"),
        "label_names": metrics["label_names"],
        "train_rows": training["train_rows"],
        "global_step": training["global_step"],
        "epochs_run": training["epochs_run"],
        "train_seconds": training["train_seconds"],
        "total_seconds": training["total_seconds"],
        "validation": {"samples_jaccard": validation["jaccard"]["samples_jaccard"],
                       "macro_f1": validation["label-f1"]["macro_f1"]},
    }
