"""Models that ship inside the package, and the one rule that decides which model a run uses.

``pip install mlbert`` carries a ready emotion classifier (``goemotions``: all-MiniLM-L6-v2
fine-tuned on GoEmotions, 28 labels, int8), so ``mlb-batch tweets.csv -o labels.jsonl`` and
``mlbert.load()`` work before anyone has trained anything. Its file, its model card and the
script that rebuilds it bit for bit are named in ``BUILTIN_MODELS``; the card is
``mlbert/models/goemotions.md``.

Which model a run uses (``resolve_model``), the same for the CLI and the Python API:

1. the model named by the caller (``--model``, or ``mlbert.load(model)``): a path to an
   ``.onnx`` file written by ``mlb-export``, a URL, the file's bytes, or the name of a built-in
   model (``goemotions``, also ``builtin:goemotions``); an existing file wins over a built-in
   name, so a file called ``goemotions`` in the working folder is that file;
2. else ``MLB_MODEL`` from the environment (what a cron job sets once), read the same way;
3. else the built-in default, ``goemotions``.

The summary of every run says which one it used (``ResolvedModel.description``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Union

from mlbert.errors import ModelFileError

MODEL_ENV = "MLB_MODEL"
BUILTIN_PREFIX = "builtin:"
DEFAULT_BUILTIN = "goemotions"
_HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass(frozen=True)
class BuiltinModel:
    """One model shipped in the package: its file and card (beside this module), what it is."""

    name: str
    file: str
    card: str
    labels: int
    summary: str

    @property
    def path(self) -> str:
        return os.path.join(_HERE, self.file)

    @property
    def card_path(self) -> str:
        return os.path.join(_HERE, self.card)


BUILTIN_MODELS = {
    "goemotions": BuiltinModel(
        name="goemotions", file="goemotions.int8.onnx", card="goemotions.md", labels=28,
        summary="all-MiniLM-L6-v2 fine-tuned on GoEmotions (English Reddit comments, 28 emotion labels), int8"),
}


@dataclass(frozen=True)
class ResolvedModel:
    """What to load, and how a summary line names it."""

    source: Union[str, bytes]
    description: str
    builtin: Optional[BuiltinModel] = None

    @property
    def where(self) -> Optional[str]:
        """How messages name a built-in model (None: by its path, as any file)."""
        if self.builtin is None:
            return None
        return f"the built-in model {self.builtin.name} ({self.builtin.path}; pip install --force-reinstall mlbert repairs it)"


def builtin_model(name: str) -> Optional[BuiltinModel]:
    """The built-in model a name stands for (``goemotions``, ``builtin:goemotions``), or None."""
    key = name[len(BUILTIN_PREFIX):] if name.startswith(BUILTIN_PREFIX) else name
    return BUILTIN_MODELS.get(key.strip().lower())


def _builtin_at(path: str) -> Optional[BuiltinModel]:
    """The built-in model whose file ``path`` is (a run resolved once and handed the path on)."""
    for builtin in BUILTIN_MODELS.values():
        if os.path.exists(builtin.path) and os.path.samefile(path, builtin.path):
            return builtin
    return None


def _named(name: str, origin: str) -> ResolvedModel:
    """A model the caller or MLB_MODEL named: an existing file (the built-in's own file is the built-in),
    else a built-in name, else a path left for the loader to refuse (it says what is wrong with it)."""
    if os.path.isfile(name) and not name.startswith(BUILTIN_PREFIX):
        at = _builtin_at(name)
        return _checked(at) if at else ResolvedModel(name, name)
    builtin = None if os.path.exists(name) and not name.startswith(BUILTIN_PREFIX) else builtin_model(name)
    if builtin is None:
        if name.startswith(BUILTIN_PREFIX):
            known = ", ".join(sorted(BUILTIN_MODELS))
            raise ModelFileError(f"{origin} {name!r}: no such built-in model (built-in: {known})")
        return ResolvedModel(name, name)
    return _checked(builtin)


def _checked(builtin: BuiltinModel) -> ResolvedModel:
    """The built-in model, after checking that the installation holds its file."""
    if not os.path.isfile(builtin.path):
        raise ModelFileError(
            f"the built-in model {builtin.name!r} is missing from this installation ({builtin.path}); "
            "reinstall mlbert (pip install --force-reinstall mlbert) or name a model with --model / MLB_MODEL")
    return ResolvedModel(builtin.path, f"built-in {builtin.name} ({builtin.labels} labels)", builtin)


def resolve_model(model: Union[str, os.PathLike, bytes, None], environ: Optional[Mapping[str, str]] = None,
                  origin: str = "--model") -> ResolvedModel:
    """The model a run uses: the caller's, else ``MLB_MODEL``, else the built-in default (module docstring).

    ``origin`` names the caller's argument in messages (``--model`` for mlb-batch, ``model`` for
    ``mlbert.load``)."""
    if isinstance(model, bytes):
        return ResolvedModel(model, f"{len(model):,} bytes of model")
    if model is not None and str(model).strip():
        return _named(os.fspath(model), origin)
    env = (os.environ if environ is None else environ).get(MODEL_ENV, "").strip()
    if env:
        return _named(env, MODEL_ENV)
    return _checked(BUILTIN_MODELS[DEFAULT_BUILTIN])
