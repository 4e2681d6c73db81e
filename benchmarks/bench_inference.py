"""Inference side by side: the recipe, the transformers pipeline, optimum, and mlb-batch.

Every contender runs the SAME model (one checkpoint and its mlb-export files) in its own
fresh process, reads the same TSV file and writes one JSONL record per row (labels and
per-label scores), so each process's peak RSS (``wait4``) is its own and each timing is
files in to file out. Contenders are interleaved round-robin (the starting contender
rotates each repeat) so that noise from a shared machine hits all of them alike; the
tables report medians.

Timings: ``seconds`` is the processing time after the model is loaded (reading the
file, tokenizing, inference, writing); ``startup`` is the rest of the process's wall time
(interpreter, imports, model load). mlb-batch's own summary line gives its processing
seconds (one decimal).

Run by benchmarks/run_all.py; on its own:

    python benchmarks/bench_inference.py --checkpoint runs/goemotions \\
        --fp32 runs/goemotions-export/model-none.onnx --int8 runs/goemotions-export/model-int8.onnx --quick

Worker mode (one contender, one process; used by the orchestrator):

    python benchmarks/bench_inference.py --worker recipe --checkpoint DIR --input FILE --output FILE
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402

RECIPE_BATCH = 8
RECIPE_LENGTH = 128
# name -> (kind, batch size or None, needs)
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
_SUMMARY_RE = re.compile(r"mlb-batch: (\d+) rows, (\d+) errors, ([0-9.]+) s,")


# =========================================================================== workers
# Each worker: load (untimed, reported as startup), then read, run, write (timed).


def _threads() -> int:
    from mlbert.runtime.cpus import available_cpus

    return available_cpus()


def _write_records(path: str, names: Sequence[str], probabilities, threshold: float = 0.5) -> None:
    """One JSONL record per row: row number, labels above the threshold, scores (like mlb-batch)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(probabilities, start=1):
            scores = {n: round(float(p), 6) for n, p in zip(names, row)}
            labels = [n for n, p in scores.items() if p >= threshold]
            f.write(json.dumps({"row": i, "labels": labels, "scores": scores}) + "\n")


def worker_recipe(args) -> Dict[str, Any]:
    """The recipe's inference: every text padded to 128 tokens, batches of 8, PyTorch fp32."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(_threads())
    tokenizer = AutoTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForSequenceClassification.from_pretrained(args.checkpoint).eval()
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    started = time.perf_counter()
    texts = c.read_tsv_texts(Path(args.input))
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), RECIPE_BATCH):
            enc = tokenizer(texts[i:i + RECIPE_BATCH], padding="max_length", truncation=True,
                            max_length=RECIPE_LENGTH, return_tensors="pt")
            out.append(torch.sigmoid(model(**enc).logits).numpy())
    _write_records(args.output, names, np.concatenate(out))
    return {"rows": len(texts), "seconds": time.perf_counter() - started}


def _pipeline_records(pipe, texts: List[str], batch: int, names: Sequence[str]):
    import numpy as np

    results = pipe(texts, batch_size=batch, truncation=True, max_length=RECIPE_LENGTH)
    index = {n: i for i, n in enumerate(names)}
    probs = np.zeros((len(texts), len(names)), dtype=np.float32)
    for r, result in enumerate(results):
        for item in result:
            probs[r, index[item["label"]]] = item["score"]
    return probs


def _time_pipeline(pipe: Any, config: Any, args) -> Dict[str, Any]:
    """The timed part for both pipeline contenders: read the file, classify, write the records."""
    names = [config.id2label[i] for i in range(config.num_labels)]
    started = time.perf_counter()
    texts = c.read_tsv_texts(Path(args.input))
    probs = _pipeline_records(pipe, texts, args.batch_size, names)
    _write_records(args.output, names, probs)
    return {"rows": len(texts), "seconds": time.perf_counter() - started}


def worker_pipeline(args) -> Dict[str, Any]:
    """``transformers.pipeline("text-classification", top_k=None, function_to_apply="sigmoid")``."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(_threads())
    pipe = pipeline("text-classification", model=str(args.checkpoint), tokenizer=str(args.checkpoint), top_k=None,
                    function_to_apply="sigmoid", device=-1)
    return _time_pipeline(pipe, pipe.model.config, args)


def optimum_folder(checkpoint: Path, fp32: Path, folder: Path) -> Path:
    """A folder optimum can load: the checkpoint's config and tokenizer beside the fp32 ONNX file.

    The ONNX file is mlb-export's fp32 output (the same graph mlb-batch runs; the mlb
    header in its metadata is ignored by optimum), so both run identical weights.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(checkpoint):
        if name.endswith((".json", ".txt")) and name != "mlb.json":
            shutil.copy2(checkpoint / name, folder / name)
    target = folder / "model.onnx"
    if not target.exists():
        try:
            os.link(fp32, target)
        except OSError:
            shutil.copy2(fp32, target)
    return folder


def worker_optimum(args) -> Dict[str, Any]:
    """optimum's ``ORTModelForSequenceClassification`` (fp32 ONNX) inside a transformers pipeline."""
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    model = ORTModelForSequenceClassification.from_pretrained(str(args.onnx_dir), file_name="model.onnx",
                                                              provider="CPUExecutionProvider")
    tokenizer = AutoTokenizer.from_pretrained(str(args.onnx_dir))
    try:
        pipe = pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                        function_to_apply="sigmoid", device=-1)
    except Exception:  # older transformers refuse a non-torch model; optimum's wrapper accepts it
        from optimum.onnxruntime import pipeline as ort_pipeline

        pipe = ort_pipeline("text-classification", model=model, tokenizer=tokenizer, top_k=None,
                            function_to_apply="sigmoid")
    return _time_pipeline(pipe, model.config, args)


def worker_mlb_model(args) -> Dict[str, Any]:
    """mlb's model time alone: the texts are read and tokenized first (timed apart), then only
    the bucketed onnxruntime batches are timed, chunk by chunk exactly as mlb-batch runs them."""
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE
    from mlbert.runtime.providers import default_token_budget
    from mlbert.runtime.session import Predictor, load_model

    from mlbert.runtime.bucketing import DEFAULT_MULTIPLE

    loaded = load_model(str(args.onnx), device="cpu")
    predictor = Predictor(loaded, default_token_budget(loaded.provider), multiple=args.multiple or DEFAULT_MULTIPLE)
    predictor.warm_up()
    t0 = time.perf_counter()
    texts = loaded.header.preprocessing.apply(c.read_tsv_texts(Path(args.input)))
    t1 = time.perf_counter()
    chunks = [predictor.encoder.encode(texts[i:i + DEFAULT_CHUNK_SIZE]) for i in range(0, len(texts), DEFAULT_CHUNK_SIZE)]
    t2 = time.perf_counter()
    for chunk in chunks:
        predictor.predict_encoded(chunk)
    t3 = time.perf_counter()
    return {"rows": len(texts), "seconds": t3 - t2, "read_seconds": t1 - t0, "tokenize_seconds": t2 - t1}


WORKERS = {"recipe": worker_recipe, "pipeline": worker_pipeline, "optimum": worker_optimum, "mlb-model": worker_mlb_model}


def worker_main(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    kind = args.worker
    result = WORKERS[kind](args)
    print(json.dumps(result), flush=True)
    return 0


# =========================================================================== orchestration


def contender_command(name: str, data: Path, out: Path, paths: Dict[str, Path]) -> List[str]:
    me = [sys.executable, str(Path(__file__).resolve())]
    spec = CONTENDERS.get(name, {})
    if name == "recipe":
        return me + ["--worker", "recipe", "--checkpoint", str(paths["checkpoint"]), "--input", str(data), "--output", str(out)]
    if name.startswith("pipeline-"):
        return me + ["--worker", "pipeline", "--checkpoint", str(paths["checkpoint"]), "--batch-size", str(spec["batch"]),
                     "--input", str(data), "--output", str(out)]
    if name.startswith("optimum-"):
        return me + ["--worker", "optimum", "--onnx-dir", str(paths["optimum"]), "--batch-size", str(spec["batch"]),
                     "--input", str(data), "--output", str(out)]
    if name.startswith("mlb-model-"):
        quant = "int8" if "int8" in name else "fp32"
        return me + ["--worker", "mlb-model", "--onnx", str(paths[quant]), "--input", str(data),
                     "--output", str(out), "--multiple", str(spec.get("multiple", 0))]
    if name.startswith("mlb-batch-"):
        return mlb_batch_command(paths[spec.get("model", name.rsplit("-", 1)[1])], data, out) + spec.get("args", [])
    raise ValueError(name)


def mlb_batch_command(model: Path, data: Path, out: Path) -> List[str]:
    """The real ``mlb-batch`` CLI on a GoEmotions-style TSV (text in column 1, id in column 3)."""
    return [sys.executable, "-m", "mlbert.batch", str(data), "-m", str(model), "-o", str(out),
            "--text-column", "column_1", "--id-column", "column_3", "--device", "cpu"]


def mlb_batch_result(stderr: str, what: str) -> Dict[str, Any]:
    """Rows and processing seconds from mlb-batch's summary line (its last on stderr)."""
    m = None
    for line in stderr.splitlines():
        m = _SUMMARY_RE.search(line) or m
    if m is None:
        raise RuntimeError(f"{what}: no summary line in its stderr")
    return {"rows": int(m.group(1)), "seconds": float(m.group(3)),
            "notes": [line for line in stderr.splitlines() if line.startswith("mlb-batch: ") and not _SUMMARY_RE.search(line)]}


def run_mlb_batch(model: Path, data: Path, out: Path, timeout: float) -> Dict[str, Any]:
    """One mlb-batch process on any model file: rows, seconds, wall, peak RSS, its notes (record count checked)."""
    return run_contender("mlb-batch-model", data, out, {"model": model}, timeout)


def run_contender(name: str, data: Path, out: Path, paths: Dict[str, Path], timeout: float) -> Dict[str, Any]:
    cmd = contender_command(name, data, out, paths)
    if out.exists():
        out.unlink()
    r = c.run_child(cmd, timeout=timeout)
    if r["rc"] not in (0, 3):
        tail = " | ".join(r["stderr"].strip().splitlines()[-3:])
        raise RuntimeError(f"{name} failed (exit {r['rc']}): {tail}")
    if name.startswith("mlb-batch-"):
        result = mlb_batch_result(r["stderr"], name)
    else:
        result = c.last_json_line(r["stdout"])
    if not name.startswith("mlb-model-"):
        written = c.count_lines(out)
        if written != result["rows"]:
            raise RuntimeError(f"{name}: wrote {written} records for {result['rows']} rows")
    result.update(wall=r["wall"], peak_rss_mib=r["peak_rss_mib"], startup=max(0.0, r["wall"] - result["seconds"]),
                  cpu_s=r["user_s"] + r["sys_s"])
    return result


def token_lengths(fp32: Path, source: Path) -> "Any":
    """Real tokens per row of ``source`` as mlb reads it (header tokenizer, preprocessing, truncation)."""
    import numpy as np

    from mlbert.runtime.encoder import Encoder

    header = c.read_header(fp32)
    encoder = Encoder(header)
    texts = header.preprocessing.apply(c.read_tsv_texts(source))
    lengths = np.concatenate([encoder.encode(texts[i:i + 4096]).lengths for i in range(0, len(texts), 4096)])
    return lengths, int(header.max_length)


def computed_tokens(name: str, lengths, max_length: int) -> int:
    """Positions the contender's batches compute (real tokens plus padding), replayed from its batching."""
    import numpy as np

    from mlbert.runtime.bucketing import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU, bucket_lengths, make_batches
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE

    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    if name == "recipe":
        return int(len(lengths) * RECIPE_LENGTH)
    spec = CONTENDERS[name]
    if "batch" in spec:  # pipelines: consecutive rows, padded to the longest of the batch
        b = spec["batch"]
        return int(sum(len(lengths[i:i + b]) * int(lengths[i:i + b].max()) for i in range(0, len(lengths), b)))
    multiple = spec.get("multiple") or DEFAULT_MULTIPLE
    total = 0  # mlb: per chunk, sorted token-budget batches padded to multiples of 8
    for start in range(0, len(lengths), DEFAULT_CHUNK_SIZE):
        part = lengths[start:start + DEFAULT_CHUNK_SIZE]
        for idx in make_batches(part, DEFAULT_TOKEN_BUDGET_CPU, max_length, multiple, DEFAULT_MAX_BATCH_ROWS):
            total += len(idx) * int(bucket_lengths(part[idx].max(keepdims=True), max_length, multiple)[0])
    return int(total)


def padding_alternatives(lengths, max_length: int) -> List[Dict[str, Any]]:
    """Padding and session.run calls that other bucketing settings would give on the same lengths.

    Replayed with ``batch.bucketing.make_batches`` per 4,096-row chunk (no model runs), so
    the batch owner can see what a setting change buys before timing it. Also splits the
    current setting's padding into rounding up to the multiple versus batches spanning
    several lengths.
    """
    import numpy as np

    from mlbert.runtime.bucketing import DEFAULT_MAX_BATCH_ROWS, DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU, bucket_lengths, make_batches
    from mlbert.runtime.classifier import DEFAULT_CHUNK_SIZE

    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), max_length)
    real = int(lengths.sum())
    out = []
    settings = sorted({(DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU), (8, 8192), (4, 2048), (1, 2048), (1, 1024), (2, 1024)})
    for multiple, budget in settings:
        total = calls = 0
        for start in range(0, len(lengths), DEFAULT_CHUNK_SIZE):
            part = lengths[start:start + DEFAULT_CHUNK_SIZE]
            batches = make_batches(part, budget, max_length, multiple, DEFAULT_MAX_BATCH_ROWS)
            calls += len(batches)
            for idx in batches:
                total += len(idx) * int(bucket_lengths(part[idx].max(keepdims=True), max_length, multiple)[0])
        rounding = int(bucket_lengths(lengths, max_length, multiple).sum())
        out.append({"multiple": multiple, "budget": budget, "padding": 1.0 - real / total,
                    "rounding_only": 1.0 - real / rounding, "calls": calls,
                    "current": (multiple, budget) == (DEFAULT_MULTIPLE, DEFAULT_TOKEN_BUDGET_CPU)})
    return out


def run_inference(checkpoint: Path, fp32: Path, int8: Path, work: Path, *, rows: Optional[int], big_rows: Optional[int],
                  repeats: int, big_repeats: int, contenders: Sequence[str], timeout: float = 1800.0,
                  data: Path = c.DATA_DIR / "test.tsv.gz", recipe_rows: Optional[int] = None) -> Dict[str, Any]:
    """All contenders on the test file (``rows`` cut, None = all), then the fast ones on ``big_rows``.

    ``recipe_rows``: run the recipe on the first N rows only. Its cost per row is the same
    for every row (each is padded to 128 tokens), so its rows/s on a prefix is its rows/s
    on the whole file; the report says when this was done.
    """
    import numpy as np

    work.mkdir(parents=True, exist_ok=True)
    paths = {"checkpoint": checkpoint, "fp32": fp32, "int8": int8,
             "optimum": optimum_folder(checkpoint, fp32, work / "optimum-fp32")}
    source_lengths, max_length = token_lengths(fp32, data)
    n_source = len(source_lengths)
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    flops = c.encoder_flops(config)
    sets = [("test", rows or n_source, list(contenders), repeats)]
    if big_rows:
        sets.append(("big", big_rows, [n for n in contenders if CONTENDERS[n].get("big")], big_repeats))
    results: Dict[str, Any] = {"flops": flops, "max_length": max_length, "sets": {}, "data": str(data),
                               "source_rows": n_source}
    for set_name, n_rows, names, reps in sets:
        path = c.make_input(data, n_rows, work)  # plain TSV, also at the source's own size (data may be .gz)
        lengths = np.resize(source_lengths, n_rows)  # the file is the source repeated / cut
        real = int(lengths.sum())
        useful = c.flops_for(flops, float(real), float((lengths.astype(np.float64) ** 2).sum()))
        runs: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
        own_rows = {n: n_rows for n in names}
        if recipe_rows and "recipe" in names and recipe_rows < n_rows:
            own_rows["recipe"] = recipe_rows
        for rep in range(reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                n_own = own_rows[name]
                own_path = path if n_own == n_rows else c.make_input(data, n_own, work)
                c.log(f"inference {set_name} ({n_own} rows) repeat {rep + 1}/{reps}: {name}")
                r = run_contender(name, own_path, work / f"out-{name}.jsonl", paths, timeout)
                c.log(f"  {r['rows'] / r['seconds']:,.0f} rows/s, {r['seconds']:.1f} s + {r['startup']:.1f} s startup, "
                      f"peak RSS {r['peak_rss_mib']:.0f} MiB")
                runs[name].append(r)
        summary = {}
        for name in names:
            rs = runs[name]
            seconds = c.median([r["seconds"] for r in rs])
            n_own = own_rows[name]
            own = lengths[:n_own]
            own_real = int(own.sum())
            own_useful = c.flops_for(flops, float(own_real), float((own.astype(np.float64) ** 2).sum()))
            computed = computed_tokens(name, own, max_length)
            summary[name] = {
                "rows": n_own, "repeats": len(rs), "seconds": seconds, "seconds_all": [r["seconds"] for r in rs],
                "rows_per_s": n_own / seconds, "tokens_per_s": own_real / seconds,
                "startup": c.median([r["startup"] for r in rs]), "wall": c.median([r["wall"] for r in rs]),
                "peak_rss_mib": c.median([r["peak_rss_mib"] for r in rs]),
                "peak_rss_max_mib": max(r["peak_rss_mib"] for r in rs),
                "computed_tokens": computed, "padding": 1.0 - own_real / computed if computed else 0.0,
                "useful_flops_per_s": own_useful / seconds,
                "computed_flops_per_s": c.flops_for(flops, float(computed), float(computed) * 0) / seconds,
                "tokenize_seconds": c.median([r["tokenize_seconds"] for r in rs]) if "tokenize_seconds" in rs[0] else None,
            }
        if set_name == "test":
            results["padding_alternatives"] = padding_alternatives(lengths, max_length)
        results["sets"][set_name] = {"rows": n_rows, "real_tokens": real, "useful_flops": useful,
                                     "mean_tokens": real / n_rows, "contenders": summary}
    return results


# =========================================================================== report


def report(results: Dict[str, Any], peaks: Dict[str, Any]) -> str:
    """Markdown: throughput and memory, distance to the limit, targets."""
    from mlbert.runtime.bucketing import DEFAULT_MULTIPLE

    out: List[str] = []
    flops = results["flops"]
    test = results["sets"]["test"]
    ref = test["contenders"].get(REFERENCE)
    out.append(f"### Throughput and memory: GoEmotions test ({test['rows']:,} rows, "
               f"{test['real_tokens']:,} real tokens, {test['mean_tokens']:.1f} per row)\n")
    rows = []
    for name, s in test["contenders"].items():
        ratio = ref["rows_per_s"] / s["rows_per_s"] if ref else None
        title = CONTENDERS[name]["title"]
        if s["rows"] != test["rows"]:
            title += f" (first {s['rows']:,} rows)"
        rows.append([title, c.fmt(s["rows_per_s"]), c.fmt(s["tokens_per_s"]),
                     c.fmt(s["seconds"], 1), c.fmt(s["startup"], 1), c.fmt(s["peak_rss_mib"]),
                     f"{ratio:.2f}x" if ratio else "n/a", s["repeats"]])
    out.append(c.md_table(["contender", "rows/s", "real tokens/s", "seconds", "startup s", "peak RSS MiB",
                           "mlb-batch int8 is ... faster", "runs"], rows))
    out.append("\n`seconds`: median processing time after the model is loaded (read file, tokenize, run, write "
               "JSONL); `startup`: the rest of the process's wall time (imports, model load). rows/s and tokens/s "
               "use `seconds`. Real tokens are counted once with the model's tokenizer (special tokens included, "
               "truncated at 128) and are the same for every contender. Peak RSS is the median over runs of each "
               "process's own `ru_maxrss`. A contender marked \"first N rows\" ran on a prefix of the file: the "
               "recipe pads every row to 128 tokens, so its cost per row does not depend on which rows it gets.\n")
    big = results["sets"].get("big")
    if big:
        out.append(f"### Throughput and memory: test repeated to {big['rows']:,} rows\n")
        rows = []
        for name, s in big["contenders"].items():
            rows.append([CONTENDERS[name]["title"], c.fmt(s["rows_per_s"]), c.fmt(s["tokens_per_s"]),
                         c.fmt(s["seconds"], 1), c.fmt(s["peak_rss_mib"]), c.fmt(s["peak_rss_max_mib"]), s["repeats"]])
        for name, s in test["contenders"].items():
            if CONTENDERS[name]["slow"]:
                rows.append([CONTENDERS[name]["title"] + " (extrapolated, not run)", c.fmt(s["rows_per_s"]),
                             c.fmt(s["tokens_per_s"]), c.fmt(big["rows"] / s["rows_per_s"], 0), "not measured", "", 0])
        out.append(c.md_table(["contender", "rows/s", "real tokens/s", "seconds", "peak RSS MiB (median)",
                               "peak RSS MiB (max)", "runs"], rows))
        out.append(f"\nOnly mlb-batch runs on {big['rows']:,} rows: the other contenders would take most of the "
                   "30-minute budget there. Their rows above are their test-file rates, extrapolated (the file is the test "
                   "file repeated, so their per-row work is the same); their memory at that size was not measured.\n")
    # distance to the limit
    out.append("### Distance to the limit\n")
    out.append(f"Encoder: {flops['layers']} layers, hidden {flops['hidden']}, feed-forward {flops['intermediate']}. "
               f"FLOPs per real token = 2 x layers x (4 h^2 + 2 h i) = {flops['matmul_per_token'] / 1e6:.1f} MFLOP for the "
               f"matmuls, plus attention 4 x layers x h x s = {flops['attention_per_token_per_position'] / 1e3:.1f} kFLOP "
               f"per position attended (s = the row's real length; {test['useful_flops'] / test['real_tokens'] / 1e6:.2f} "
               f"MFLOP per real token on average here). Useful FLOP/s = these FLOPs over real tokens only / seconds.\n")
    out.append(f"Peaks: fp32 {peaks['fp32_text']}; int8 {peaks['int8_text']}.\n")
    rows = []
    for set_name, s_set in results["sets"].items():
        for name, s in s_set["contenders"].items():
            peak = peaks["int8"] if "int8" in name else peaks["fp32"]
            rows.append([f"{s_set['rows']:,}", CONTENDERS[name]["title"], f"{100 * s['padding']:.1f}%",
                         f"{s['useful_flops_per_s'] / 1e9:.1f}", f"{s['computed_flops_per_s'] / 1e9:.1f}",
                         f"{100 * s['useful_flops_per_s'] / peak:.0f}%",
                         "int8" if "int8" in name else "fp32"])
    out.append(c.md_table(["rows", "contender", "padding share of computed tokens", "useful GFLOP/s",
                           "computed GFLOP/s (incl. padding, matmuls)", "useful / peak", "peak used"], rows))
    out.append("\nPadding is replayed from each contender's batching on the same token lengths: the recipe pads every "
               "row to 128; the pipelines pad each batch of consecutive rows to its longest row; mlb sorts each "
               f"4,096-row chunk by length and pads token-budget batches to the next multiple of {DEFAULT_MULTIPLE} "
               "(`batch.bucketing.make_batches`).\n")
    alts = results.get("padding_alternatives")
    if alts:
        out.append("mlb's padding under other bucketing settings, replayed on the same test-file lengths (not timed; "
                   "fewer tokens computed is less work, more `session.run` calls is more per-call overhead):\n")
        out.append(c.md_table(
            ["multiple", "token budget", "padding", "of which rounding to the multiple", "session.run calls", ""],
            [[a["multiple"], a["budget"], f"{100 * a['padding']:.1f}%", f"{100 * a['rounding_only']:.1f}%", a["calls"],
              "current default" if a["current"] else ""] for a in alts]))
        out.append("")
    return "\n".join(out)


def targets(results: Dict[str, Any]) -> List[List[str]]:
    """Rows for the targets table: target, measured, met?"""
    test = results["sets"]["test"]["contenders"]
    rows: List[List[str]] = []

    def ratio(a: str, b: str) -> Optional[float]:
        if a in test and b in test:
            return test[a]["rows_per_s"] / test[b]["rows_per_s"]
        return None

    def add(target: str, value: Optional[float], need: float, unit: str = "x", less: bool = False) -> None:
        if value is None:
            rows.append([target, "not measured", "n/a"])
            return
        met = value <= need if less else value >= need
        shown = f"{100 * value:.1f}%" if unit == "%" else f"{value:.2f}x"
        rows.append([target, shown, "met" if met else "NOT met"])

    best_pipe = None
    for p in ("pipeline-32", "pipeline-64"):
        if p in test and (best_pipe is None or test[p]["rows_per_s"] > test[best_pipe]["rows_per_s"]):
            best_pipe = p
    if best_pipe:
        add(f"mlb-batch int8 >= 4x transformers pipeline fp32 (best batch size: {best_pipe})", ratio(REFERENCE, best_pipe), 4)
    add("mlb-batch int8 >= 8x the recipe", ratio(REFERENCE, "recipe"), 8)
    add("mlb-batch fp32 >= 1.5x optimum ORTModel pipeline", ratio("mlb-batch-fp32", "optimum-64"), 1.5)
    for q in ("int8", "fp32"):
        if f"mlb-batch-{q}" in test:
            add(f"padding < 10% of computed tokens (mlb {q})", test[f"mlb-batch-{q}"]["padding"], 0.10, "%", less=True)
    for set_name, s_set in results["sets"].items():
        cs = s_set["contenders"]
        for q in ("int8", "fp32"):
            if f"mlb-batch-{q}" in cs and f"mlb-model-{q}" in cs:
                over = cs[f"mlb-batch-{q}"]["seconds"] / cs[f"mlb-model-{q}"]["seconds"] - 1.0
                add(f"end to end within 15% of pure model time ({q}, {s_set['rows']:,} rows)", over, 0.15, "%", less=True)
    return rows


def plot(results: Dict[str, Any], folder: Path, suffix: str = "") -> List[Path]:
    """Bar charts of rows/s and peak RSS on the test file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    test = results["sets"]["test"]["contenders"]
    names = [n for n in test if not CONTENDERS[n].get("aux")]
    titles = [CONTENDERS[n]["title"] for n in names]
    written = []
    for key, label, fname in (("rows_per_s", "rows/s (higher is better)", f"bench_throughput{suffix}.png"),
                              ("peak_rss_mib", "peak resident memory, MiB (lower is better)", f"bench_memory{suffix}.png")):
        fig, ax = plt.subplots(figsize=(7.5, 0.45 * len(names) + 1.2), dpi=110)
        values = [test[n][key] for n in names]
        colors = ["#d62728" if n.startswith("mlb") else "#7f7f7f" for n in names]
        ax.barh(range(len(names)), values, color=colors)
        ax.set_yticks(range(len(names)), titles, fontsize=8)
        ax.invert_yaxis()
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_xlabel(label)
        ax.set_title(f"GoEmotions test, {results['sets']['test']['rows']:,} rows, same model", fontsize=9)
        ax.set_xlim(0, max(values) * 1.18)
        fig.tight_layout()
        path = folder / fname
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Inference benchmark (see the module docstring).")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--onnx", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--onnx-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)
    parser.add_argument("--multiple", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--fp32", type=Path)
    parser.add_argument("--int8", type=Path)
    parser.add_argument("--work", type=Path, default=c.WORK_DIR)
    parser.add_argument("--quick", action="store_true", help="500 rows, 1 repeat, no big file")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--big-rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--big-repeats", type=int, default=1)
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help="comma-separated subset")
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)
    if not (args.checkpoint and args.fp32 and args.int8):
        parser.error("--checkpoint, --fp32 and --int8 are required")
    if args.quick:
        args.rows, args.big_rows, args.repeats = args.rows or 500, None, 1
    results = run_inference(args.checkpoint, args.fp32, args.int8, args.work, rows=args.rows, big_rows=args.big_rows,
                            repeats=args.repeats, big_repeats=args.big_repeats, contenders=args.contenders.split(","))
    print(report(results, c.cpu_peaks(c.machine_info())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
