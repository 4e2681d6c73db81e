"""The execution providers mlb can run on: one row each.

``--device`` takes its choices from ``DEVICES``; ``auto`` tries the accelerators in table
order and falls back to the CPU (``runtime.load_model``); each row carries the provider's
default token budget (padded tokens per batch), its warm-up and what to install when it
does not start. A new execution provider is one row here. Stdlib only, so ``--help`` stays
fast; onnxruntime is imported by ``runtime`` (and by a row's ``preload`` when it runs).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from mlbert.runtime.bucketing import DEFAULT_TOKEN_BUDGET_CPU, DEFAULT_TOKEN_BUDGET_CUDA

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def preload_cuda_libraries() -> bool:
    """Load CUDA/cuDNN from pip ``nvidia-*`` wheels when they are installed. Never raises."""
    import onnxruntime as ort

    if not hasattr(ort, "preload_dlls") or importlib.util.find_spec("nvidia") is None:
        return False
    try:
        # preload_dlls print()s the libraries it could not load: send that to stderr (where the
        # caller reads onnxruntime's log for the reason), never into mlb-batch's records on stdout.
        with contextlib.redirect_stdout(sys.stderr):
            ort.preload_dlls(directory="")
        return True
    except Exception:  # a partial install: the session creation reports what is missing
        return False


@dataclass(frozen=True)
class Provider:
    """One execution provider mlb can run on.

    ``device``: the ``--device`` value. ``name``: onnxruntime's provider name.
    ``token_budget``: default padded tokens per batch. ``full_warm_up``: warm up with the
    largest batch the budget allows, so an out-of-memory error shows before any output is
    written (a CPU warms up with one short row). ``needs``: what a user installs or fixes
    when it cannot start. ``preload``: loads libraries pip put outside the loader path.
    """

    device: str
    name: str
    token_budget: int
    full_warm_up: bool = False
    needs: str = ""
    preload: Optional[Callable[[], bool]] = None


CPU_PROVIDER = Provider("cpu", CPU, DEFAULT_TOKEN_BUDGET_CPU)
PROVIDERS: Tuple[Provider, ...] = (
    Provider("cuda", CUDA, DEFAULT_TOKEN_BUDGET_CUDA, full_warm_up=True,
             needs="the CUDA and cuDNN libraries it was built for (pip install 'mlbert[cuda]' brings them as "
                   "nvidia-* wheels)",
             preload=preload_cuda_libraries),
    CPU_PROVIDER,  # last: the fallback of auto
)
# "auto" first, then the CPU, then the accelerators (the order --help shows).
DEVICES = ("auto", CPU_PROVIDER.device) + tuple(p.device for p in PROVIDERS if p is not CPU_PROVIDER)


def provider_for(name_or_device: str) -> Provider:
    """The row for an onnxruntime provider name or a ``--device`` value (unknown: the CPU's)."""
    for provider in PROVIDERS:
        if name_or_device in (provider.name, provider.device):
            return provider
    return CPU_PROVIDER


def default_token_budget(provider: str, max_length: int = 0) -> int:
    """The provider's default budget, at least one row at the model's maximum length."""
    return max(provider_for(provider).token_budget, int(max_length))


def token_budget_help() -> str:
    """"2048 on CPU, 65536 on CUDA": the default budgets, in the words --help texts use."""
    ordered = [CPU_PROVIDER] + [p for p in PROVIDERS if p is not CPU_PROVIDER]
    return ", ".join(f"{p.token_budget} on {p.device.upper()}" for p in ordered)
