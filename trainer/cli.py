"""``mlb-train``: a thin click layer over ``trainer.train.train``.

Heavy imports happen inside ``train`` so ``mlb-train --help`` answers at once. Library
errors (``batch.errors.MlbError``) become one ``Error: ...`` line and their exit code;
``MLB_RAISE_ERRORS=1`` shows the traceback instead.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import click

from mlbert.cli_common import MlbCommand, command_argv
from mlbert.preprocess import EMOJI_MODES, MENTION_MODES, URL_MODES, Preprocessing

from mlbert import __version__
from mlbert.trainer.losses import LOSSES
from mlbert.trainer.options import labelled_data_options
from mlbert.trainer.thresholds import OBJECTIVES

# Click destinations that differ from the TrainOptions field they fill.
OPTION_FIELDS = {"train_file": "train", "validation_file": "validation", "test_file": "test", "format_": "format"}


def _stopped_message(what: str, obj: Dict[str, Any]) -> str:
    return f"stopped by {what}; rerun with --resume to continue from the last checkpoint"


@click.command(cls=MlbCommand, stopped=_stopped_message)
@click.version_option(__version__, "--version", prog_name="mlb-train")
@click.option("-o", "--output", default="./mlb-model", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the checkpoint, mlb.json, metrics.json (intermediate checkpoints go in OUTPUT/checkpoints).")
@click.option("--dataset", metavar="NAME|PATH", help="Hub dataset name, or a folder written by datasets' save_to_disk.")
@click.option("--dataset-config", metavar="CONFIG", help="Hub dataset configuration, e.g. subtask5.english.")
@click.option("--train", "train_file", metavar="FILE", help="Training file: CSV, TSV, JSONL or Parquet, optionally .gz.")
@click.option("--validation", "validation_file", metavar="FILE",
              help="Validation file (threshold tuning, early stopping). Default: hold out --validation-fraction of train.")
@click.option("--test", "test_file", metavar="FILE", help="Test file, scored once at the end.")
@labelled_data_options("the data files")
@click.option("--validation-fraction", type=float, default=0.1, show_default=True,
              help="Share of train held out (seeded) when there is no validation split.")
@click.option("--limit-train", type=int, metavar="N", help="Train on a seeded sample of N rows (quick runs).")
@click.option("--limit-eval", type=int, metavar="N", help="Use only the first N validation and test rows.")
@click.option("--base-model", metavar="NAME|PATH",
              help="Hub model name or local folder (default: the packaged all-MiniLM-L6-v2).")
@click.option("--epochs", type=float, default=10.0, show_default=True, help="Most epochs; early stopping usually ends sooner.")
@click.option("--max-steps", type=int, metavar="N", help="Stop after N optimizer steps (overrides --epochs).")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Peak learning rate (1e-4 suits MiniLM; ~3e-5 for bert-base).")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--max-length", type=int, default=128, show_default=True, help="Longest input in tokens (longer texts are truncated).")
@click.option("--warmup-ratio", type=float, default=0.1, show_default=True)
@click.option("--weight-decay", type=float, default=0.01, show_default=True)
@click.option("--early-stopping-patience", type=int, default=2, show_default=True,
              help="Stop after this many evaluations without improvement (0: never).")
@click.option("--eval-steps", type=int, metavar="N", help="Evaluate and save every N steps (default: once an epoch).")
@click.option("--metric-for-best", type=click.Choice(
    ["samples_jaccard", "micro_f1", "macro_f1", "exact_match", "macro_roc_auc", "micro_roc_auc", "loss"]),
    default="samples_jaccard", show_default=True, help="Validation metric that picks the best checkpoint (Jaccard/F1 at thresholds tuned for them).")
@click.option("--threshold-objective", type=click.Choice(list(OBJECTIVES)),
              default="jaccard", show_default=True,
              help="What the saved thresholds maximise on validation. label-f1: one threshold per label (best macro-F1).")
@click.option("--pos-weight", type=click.Choice(["none", "balanced", "sqrt"]), default="none", show_default=True,
              help="Weight positives of rare labels in the loss (negatives/positives, or its square root).")
@click.option("--loss", type=click.Choice(list(LOSSES)), default="bce", show_default=True,
              help="bce: binary cross-entropy. asl: the asymmetric loss (Ridnik et al. 2021); with equal gammas "
                   "and --asl-clip 0 it is the focal loss.")
@click.option("--asl-gamma-neg", type=float, default=4.0, show_default=True, help="asl: focusing exponent of negatives.")
@click.option("--asl-gamma-pos", type=float, default=1.0, show_default=True, help="asl: focusing exponent of positives.")
@click.option("--asl-clip", type=float, default=0.05, show_default=True,
              help="asl: probability margin below which a negative costs nothing.")
@click.option("--lca-weight", type=float, default=0.0, show_default=True,
              help="Weight alpha of SpanEmo's label-correlation term: (1-alpha)*loss + alpha*LCA (0: off; SpanEmo: 0.2).")
@click.option("--layer-lr-decay", type=float, default=1.0, show_default=True,
              help="Layer-wise learning-rate decay: each layer below the head learns this factor slower (1: off).")
@click.option("--ema-decay", type=float, default=0.0, show_default=True,
              help="Evaluate and save an exponential moving average of the weights with this decay, e.g. 0.999 (0: off).")
@click.option("--head-bias-init", type=click.Choice(["prior", "zero"]), default="prior", show_default=True,
              help="Start the classifier bias at each label's log-odds in the training data (prior), or at 0 "
                   "(transformers' default, every label at probability 0.5).")
@click.option("--pooler", type=click.Choice(["reinit", "keep"]), default="reinit", show_default=True,
              help="BERT-style pooler under a new head: re-initialise it (the default model's was never trained), "
                   "or keep the base model's.")
@click.option("--pooling", type=click.Choice(["cls", "mean"]), default="cls", show_default=True,
              help="How the head reads the encoder. cls: the architecture's own head ([CLS] through BERT's pooler). "
                   "mean: the attention-mask-weighted mean of the last hidden states (how all-MiniLM-L6-v2 was "
                   "trained), mlb's own model class.")
@click.option("--label-input", is_flag=True,
              help="Put the label names before the text (a first segment) and score each label from its own tokens "
                   "(SpanEmo); longer inputs cost inference speed (docs/RECIPE.md).")
@click.option("--label-token", type=click.Choice(["first", "mean"]), default="first", show_default=True,
              help="--label-input: read a label from its first sub-token or from the mean of its sub-tokens.")
@click.option("--head-dropout-samples", type=int, default=1, show_default=True, metavar="K",
              help="Multi-sample dropout: K dropout masks on the head, their losses averaged (training only; 1: off).")
@click.option("--average-checkpoints", type=int, default=1, show_default=True, metavar="K",
              help="Average the weights of the best K validation checkpoints; kept only if it scores at least the "
                   "best checkpoint on validation (1: off; evaluate often enough with --eval-steps).")
@click.option("--soup", multiple=True, metavar="RUN",
              help="Instead of training, average the weights of these finished runs (one recipe and base, e.g. two "
                   "seeds; repeat the option) and tune thresholds on the data options' validation split.")
@click.option("--intermediate-train", metavar="FILE",
              help="Fine-tune on this labelled file first (its own labels), then on the target data with a new head, "
                   "the encoder carried over (OUTPUT/intermediate holds the first model).")
@click.option("--intermediate-dataset", metavar="NAME|PATH", help="The intermediate data as a hub dataset or "
                                                                     "save_to_disk folder (instead of --intermediate-train).")
@click.option("--intermediate-dataset-config", metavar="CONFIG", help="Hub configuration of --intermediate-dataset.")
@click.option("--intermediate-validation", metavar="FILE",
              help="Validation file of the intermediate data (default: hold out --validation-fraction of it).")
@labelled_data_options("the intermediate data", prefix="intermediate")
@click.option("--intermediate-limit-train", type=int, metavar="N", help="Use a seeded sample of N intermediate rows.")
@click.option("--intermediate-epochs", type=float, default=1.0, show_default=True,
              help="Most epochs of the intermediate stage (early stopping applies as for the target).")
@click.option("--intermediate-max-steps", type=int, metavar="N", help="Steps of the intermediate stage (overrides "
                                                                       "--intermediate-epochs).")
@click.option("--emoji", type=click.Choice(EMOJI_MODES), default="words", show_default=True,
              help="Emoji: spell out as words (the vocabulary maps them to [UNK]), keep, or remove.")
@click.option("--mentions", type=click.Choice(MENTION_MODES), default="token", show_default=True,
              help="@user mentions: replace with one token, keep, or remove.")
@click.option("--urls", type=click.Choice(URL_MODES), default="token", show_default=True,
              help="URLs: replace with one token, keep, or remove.")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="auto: CUDA when present (bf16 where supported, else fp16), CPU otherwise.")
@click.option("--resume", is_flag=True, help="Continue from the last checkpoint in OUTPUT/checkpoints.")
@click.option("--overwrite", is_flag=True, help="Replace a model already in OUTPUT.")
def cli(**kwargs: Any) -> None:
    """Fine-tune a multi-label text classifier and write an mlb checkpoint.

    \b
    GoEmotions (TSV without header, label ids, names file), a quick run:
      mlb-train --train data/goemotions/train.tsv.gz --validation data/goemotions/dev.tsv.gz \\
        --test data/goemotions/test.tsv.gz --label-names data/goemotions/emotions.txt \\
        --limit-train 500 --max-steps 20 -o goemotions-smoke

    \b
    SemEval-2018 E-c from the hub (wide layout: one true/false column per emotion):
      mlb-train --dataset sem_eval_2018_task_1 --dataset-config subtask5.english -o semeval-model

    \b
    A CSV with a "text" column and a "labels" column like "joy,love", no validation file:
      mlb-train --train tweets.csv --validation-fraction 0.1 -o my-model

    The output folder is a standard Hugging Face checkpoint plus mlb.json (labels,
    thresholds, preprocessing, provenance), metrics.json (validation/test metrics at 0.5
    and at thresholds tuned for each objective), history.json and eval_predictions.npz.
    """
    from mlbert.trainer.outputs import summary_table
    from mlbert.trainer.train import TrainOptions, train

    pre = Preprocessing(emoji=kwargs.pop("emoji"), mentions=kwargs.pop("mentions"), urls=kwargs.pop("urls"))
    intermediate = intermediate_data({name: kwargs.pop(name) for name in list(kwargs)
                                      if name.startswith("intermediate_")})
    soup = list(kwargs.pop("soup")) or None
    # Every other option is a TrainOptions field of the same name, but for these four.
    fields = {OPTION_FIELDS.get(name, name): value for name, value in kwargs.items()}
    opts = TrainOptions(
        **fields,
        preprocessing=pre,
        intermediate=intermediate,
        soup=soup,
        command=["mlb-train"] + command_argv(),
    )
    metrics = train(opts, log=lambda line: click.echo(line, err=True))
    if metrics:  # {} on the other processes of a torchrun: one table, from the main process
        click.echo(summary_table(metrics))


def intermediate_data(values: Dict[str, Any]) -> Optional[Any]:
    """``--intermediate-*`` as ``IntermediateData`` (None without intermediate data; its options alone are refused)."""
    from mlbert.trainer.train_options import IntermediateData

    fields = {OPTION_FIELDS.get(name[len("intermediate_"):], name[len("intermediate_"):]): value
              for name, value in values.items()}
    if not fields.get("train") and not fields.get("dataset"):
        defaults = IntermediateData()
        given = [name for name, value in fields.items() if value is not None and value != getattr(defaults, name)]
        if given:
            raise click.UsageError(f"--intermediate-{given[0].replace('_', '-')} needs --intermediate-train FILE "
                                   "or --intermediate-dataset NAME")
        return None
    return IntermediateData(**fields)


def main(args: Optional[List[str]] = None, prog_name: str = "mlb-train") -> None:
    """Console entry point: user errors become one line and an exit code, not a traceback."""
    cli.main(args, prog_name=prog_name)
