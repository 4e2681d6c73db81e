"""The contenders of the inference benchmark: one name each, shared by the worker processes
(``inference_workers.py``), the orchestration (``bench_inference.py``) and the report
(``inference_report.py``)."""

from __future__ import annotations

from typing import Any, Dict

RECIPE_BATCH = 8
RECIPE_LENGTH = 128
# name -> title; slow (too slow for the big file), big (runs on it), aux (not plotted), batch,
# model and args (mlb-batch variants), multiple (bucketing what-if)
CONTENDERS: Dict[str, Dict[str, Any]] = {
    "recipe": {"title": "recipe (PyTorch, pad 128, batch 8)", "slow": True},
    "pipeline-32": {"title": "transformers pipeline, batch 32", "slow": True, "batch": 32},
    "pipeline-64": {"title": "transformers pipeline, batch 64", "slow": True, "batch": 64},
    "optimum-64": {"title": "optimum ORTModel fp32 in pipeline, batch 64", "slow": True, "batch": 64},
    "mlb-batch-fp32": {"title": "mlb-batch fp32", "slow": False, "big": True},
    "mlb-batch-int8": {"title": "mlb-batch int8", "slow": False, "big": True},
    # mlb-batch as it ran before streams: one batch at a time on all the threads (runtime.cpu_streams).
    "mlb-batch-fp32-1stream": {"title": "mlb-batch fp32, one stream (before)", "slow": False, "aux": True,
                               "model": "fp32", "args": ["--streams", "1"]},
    "mlb-batch-int8-1stream": {"title": "mlb-batch int8, one stream (before)", "slow": False, "aux": True,
                               "model": "int8", "args": ["--streams", "1"]},
    "mlb-model-fp32": {"title": "mlb model only fp32 (pre-tokenized, no I/O)", "slow": False, "aux": True},
    "mlb-model-int8": {"title": "mlb model only int8 (pre-tokenized, no I/O)", "slow": False, "aux": True},
    # What-if for mlbert/runtime/bucketing.py: the same model-only run with padded lengths rounded to
    # multiples of 1 (each batch padded to its longest row) instead of DEFAULT_MULTIPLE.
    "mlb-model-int8-m1": {"title": "mlb model only int8, bucket multiple 1 (what-if)", "slow": False, "aux": True,
                          "multiple": 1},
}
REFERENCE = "mlb-batch-int8"
