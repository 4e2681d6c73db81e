"""int8 schemes side by side, on GoEmotions-length and tweet-length texts: speed, profile, accuracy.

Every candidate is made from the SAME fp32 mlb-export file by the exporter's own steps
(``exporter.quantize.fuse_encoder`` and ``quantize_int8``, the code behind
``mlb-export --quantize int8 --quantize-config NAME``), so the files differ only in how
they were quantized. For each text set:

* speed: ``mlb-batch`` (the real CLI, a fresh process per run) on every candidate and the
  ``transformers`` pipeline (fp32, batch 32) on the checkpoint, round-robin with the
  starting contender rotating, medians of ``repeats`` runs; and ``mlb-eval`` on the
  default int8 file, the same texts, its own "Scored N rows ... rows/s" line;
* where the time goes: ``op_profile.profile`` (onnxruntime's profiler) per operator group;
* accuracy (trained checkpoints only): each file's metrics at its saved thresholds
  against the fp32 file's, through ``trainer.evaluate`` (mlb-eval's library).

The text sets: GoEmotions test (5,427 Reddit comments, ~19 tokens per row) and
"tweet-length": the GoEmotions dev comments of ``TWEET_MIN_TOKENS`` tokens or more
(~2,500 rows, ~27 tokens per row), generated from the shipped data at run time. Dev never
trains the weights (it only picks thresholds and the early-stopping epoch), the set has
labels, and its mean length matches the English emotion tweets measured on Zen 3 (27
tokens per row). It is not tweets: the domain stays Reddit's.

Run by benchmarks/run_all.py (part ``int8``); alone:

    python benchmarks/bench_int8.py --checkpoint runs/goemotions --fp32 runs/bench/models/goemotions-fp32.onnx
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bench_inference as bi  # noqa: E402
import common as c  # noqa: E402
import op_profile  # noqa: E402

TWEET_MIN_TOKENS = 20
CALIBRATION_ROWS = 256
DEFAULT = "unfused"  # exporter.quantize.DEFAULT_INT8_SCHEME, the file mlb-export writes
# key -> (title, how it is made). Keys are plain words: they name files and contenders.
CANDIDATES: Dict[str, Tuple[str, str]] = {
    "fp32": ("fp32", "mlb-export, no quantization"),
    "fp32fused": ("fp32, transformer fusions", "fp32 graph after onnxruntime's transformer fusions"),
    "previous": ("int8 before: S8 8-bit per-tensor, unfused", "the settings of optimum's avx512_vnni preset, "
                 "mlb-export's int8 on VNNI machines before this change"),
    "u8u8": ("int8 u8u8: U8 weights per-tensor, unfused", "--quantize-config u8u8 (optimum's avx2 preset, "
             "mlb-export's int8 on AVX2 machines before)"),
    "unfused": ("int8 unfused: S8 7-bit per-channel (default)", "--quantize-config unfused, the default"),
    "vnni": ("int8 vnni: fused, S8 8-bit per-channel", "--quantize-config vnni"),
    "portable": ("int8 portable: fused, S8 7-bit per-channel", "--quantize-config portable (the default before the "
                 "measurements below)"),
    "noattn": ("int8 fused except attention: S8 7-bit per-channel", "as portable, but attention left as "
               "MatMuls (quantized one by one) instead of one QAttention"),
    "ffnfp32": ("int8 portable, feed-forward output in fp32", "as portable, but the 2nd feed-forward matrix of "
                "each layer (input: GELU's output, the widest range) left in fp32"),
    "static": ("int8 static QDQ: S8 7-bit per-channel, unfused", f"onnxruntime's quantize_static (QDQ, MinMax) "
               f"calibrated on {CALIBRATION_ROWS} GoEmotions dev rows; activations' scales fixed ahead of time"),
}
SPEED_ONLY_TARGET_KEYS = ("fp32", DEFAULT)
# Targets of issue 12 per machine kind (batch.cpus.CpuFeatures.int8_path): (int8 / fp32, int8 / pipeline).
TARGETS = {"avx512_vnni": (2.5, 5.0), "avx2": (1.8, 4.0)}
_EVAL_RE = re.compile(r"Scored (\d+) rows with .* in ([0-9.]+) s \(([0-9]+) rows/s\)")


# =========================================================================== files


def build_candidates(fp32: Path, checkpoint: Path, folder: Path, keys: Sequence[str],
                     data_dir: Path = c.DATA_DIR) -> Dict[str, Path]:
    """Every candidate file from ``fp32`` (the exporter's steps; headers copied from the fp32 file)."""
    import onnx

    from mlbert.modelfile import attach_header
    from mlbert.exporter import quantize as q

    folder.mkdir(parents=True, exist_ok=True)
    hf_config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    schemes = dict(q.INT8_SCHEMES)
    schemes["noattn"] = q.Int8Scheme("noattn", "int8", reduce_range=True, per_channel=True, fuse=True,
                                     suits="every CPU", fuse_attention=False)
    schemes["previous"] = q.Int8Scheme("previous", "int8", reduce_range=False, per_channel=False, fuse=False,
                                       suits="VNNI CPUs (optimum's avx512_vnni preset)")
    paths: Dict[str, Path] = {"fp32": fp32}
    for key in keys:
        if key == "fp32":
            continue
        out = paths[key] = folder / f"{key}.onnx"
        if out.exists():
            continue
        c.log(f"int8: building {key}")
        header = c.read_header(fp32)
        fused = folder / f"{key}-fused-tmp.onnx"
        scheme = schemes.get(key)
        source = fp32
        if key == "fp32fused" or (key not in ("ffnfp32", "static") and scheme is not None and scheme.fuse):
            q.fuse_encoder(str(fp32), str(fused), hf_config, attention=scheme is None or scheme.fuse_attention)
            source = fused
        if key == "ffnfp32":
            q.fuse_encoder(str(fp32), str(fused), hf_config)
            quantize_leaving_ffn_output(fused, out)
            header.quantization = dict(q.INT8_SCHEMES["portable"].settings(), config="ffnfp32")
        elif key == "static":
            quantize_static_qdq(fp32, out, data_dir)
            header.quantization = {"mode": "int8", "method": "static", "config": "static", "weights_dtype": "QInt8",
                                   "reduce_range": True, "per_channel": True, "fused": False}
        elif scheme is not None:
            q.quantize_int8(str(source), str(out), scheme)
            header.quantization = scheme.settings()
        else:
            source.replace(out)
        model = onnx.load(str(out))
        initializers = {i.name for i in model.graph.initializer}
        header.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        attach_header(model, header)
        onnx.save(model, str(out))
        fused.unlink(missing_ok=True)
    return paths


def quantize_leaving_ffn_output(fused: Path, out: Path) -> None:
    """The portable scheme's settings with each layer's feed-forward output matrix left in fp32."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    keep = [n.name for n in onnx.load(str(fused), load_external_data=False).graph.node
            if n.op_type == "MatMul" and "/output/dense/" in n.name and "/attention/" not in n.name]
    if not keep:
        raise RuntimeError(f"{fused}: no feed-forward output MatMul found by name")
    quantize_dynamic(str(fused), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                     nodes_to_exclude=keep, extra_options={"MatMulConstBOnly": True,
                                                           "DefaultTensorType": onnx.TensorProto.FLOAT})


def quantize_static_qdq(fp32: Path, out: Path, data_dir: Path) -> None:
    """Static QDQ int8 (signed 7-bit per-channel weights), activation ranges from GoEmotions dev rows."""
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from mlbert.runtime.encoder import Encoder

    header = c.read_header(fp32)
    encoder = Encoder(header)
    texts = header.preprocessing.apply(c.read_tsv_texts(data_dir / "dev.tsv.gz", limit=CALIBRATION_ROWS))
    feeds = []
    for i in range(0, len(texts), 32):
        chunk = encoder.encode(texts[i:i + 32])
        width = int(chunk.lengths.max())
        batch = chunk.batch(np.arange(len(chunk)), width)
        feed = {"input_ids": batch.input_ids.astype(np.int64), "attention_mask": batch.attention_mask.astype(np.int64)}
        if "token_type_ids" in header.input_names:
            feed["token_type_ids"] = np.zeros_like(feed["input_ids"])
        feeds.append(feed)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(fp32), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                    calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["MatMul"])


def tweet_length_set(fp32: Path, data_dir: Path, folder: Path, min_tokens: int = TWEET_MIN_TOKENS) -> Path:
    """GoEmotions dev rows of ``min_tokens`` tokens or more (the model's tokenizer), as a plain TSV."""
    import numpy as np

    from mlbert.runtime.encoder import Encoder

    path = folder / f"tweet-length-{min_tokens}.tsv"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    header = c.read_header(fp32)
    encoder = Encoder(header)
    with c.open_text(data_dir / "dev.tsv.gz") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    texts = header.preprocessing.apply([r[0] if r else "" for r in rows])
    lengths = np.concatenate([encoder.encode(texts[i:i + 4096]).lengths for i in range(0, len(texts), 4096)])
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        for row, n in zip(rows, lengths):
            if n >= min_tokens:
                writer.writerow(row)
    return path


# =========================================================================== speed


def mlb_eval_command(model: Path, data: Path, label_names: Path) -> List[str]:
    return [sys.executable, "-c", "from mlbert.trainer.eval_cli import main; main()", str(model), str(data),
            "--label-names", str(label_names), "--device", "cpu"]


def run_once(name: str, data: Path, out: Path, paths: Dict[str, Path], label_names: Path) -> Dict[str, Any]:
    """One timed process: ``mlb-batch-KEY``, ``mlb-eval-KEY`` or ``pipeline-32``."""
    if name.startswith("pipeline-"):
        return bi.run_contender(name, data, out, paths, timeout=1800)
    kind, key = name.rsplit("-", 1)
    if kind == "mlb-batch":
        return bi.run_mlb_batch(paths[key], data, out, timeout=1800)
    r = c.run_child(mlb_eval_command(paths[key], data, label_names), timeout=1800)
    match = _EVAL_RE.search(r["stderr"])
    if r["rc"] != 0 or match is None:
        raise RuntimeError(f"{name} failed (exit {r['rc']}): {r['stderr'].strip()[-300:]}")
    seconds = float(match.group(2))
    return {"rows": int(match.group(1)), "seconds": seconds, "wall": r["wall"],
            "startup": max(0.0, r["wall"] - seconds), "peak_rss_mib": r["peak_rss_mib"]}


def run_speed(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], work: Path, repeats: int,
              label_names: Path, pipeline: bool) -> Dict[str, Any]:
    """Medians of ``repeats`` round-robin runs, per set and contender."""
    names = [f"mlb-batch-{k}" for k in keys] + [f"mlb-eval-{DEFAULT}"] + (["pipeline-32"] if pipeline else [])
    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        runs: Dict[str, List[Dict[str, Any]]] = {n: [] for n in names}
        for rep in range(repeats):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order:
                r = run_once(name, data, work / f"out-{name}.jsonl", paths, label_names)
                c.log(f"int8 speed {set_name} {rep + 1}/{repeats} {name}: {r['rows'] / r['seconds']:,.0f} rows/s")
                runs[name].append(r)
        out[set_name] = {n: {"rows": rs[0]["rows"], "seconds": c.median([r["seconds"] for r in rs]),
                             "seconds_all": [r["seconds"] for r in rs], "rows_per_s": rs[0]["rows"] / c.median(
                                 [r["seconds"] for r in rs]), "wall": c.median([r["wall"] for r in rs]),
                             "rows_per_s_wall": rs[0]["rows"] / c.median([r["wall"] for r in rs]),
                             "peak_rss_mib": c.median([r["peak_rss_mib"] for r in rs]), "repeats": len(rs)}
                         for n, rs in runs.items()}
    return out


# =========================================================================== accuracy and profile


def run_accuracy(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], label_names: Path) -> Dict[str, Any]:
    """Metrics at each file's saved thresholds (all files share them), per set."""
    from mlbert.trainer.data import read_labelled_file
    from mlbert.trainer.evaluate import evaluate_model, load_eval_model

    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        labelled = read_labelled_file(str(data), label_names=c.read_lines(label_names))
        out[set_name] = {}
        for key in keys:
            model = load_eval_model(str(paths[key]), device="cpu")
            ev = evaluate_model(model, labelled.texts, labelled.label_names, labelled.labels, labelled.source)
            out[set_name][key] = {k: float(ev.metrics["model"][k]) for k in ("micro_f1", "macro_f1", "samples_jaccard")}
            c.log(f"int8 accuracy {set_name} {key}: {out[set_name][key]}")
    return out


def run_profiles(sets: Dict[str, Path], paths: Dict[str, Path], keys: Sequence[str], rows: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for set_name, data in sets.items():
        texts = c.read_tsv_texts(data, limit=rows)
        out[set_name] = {key: op_profile.profile(paths[key], texts) for key in keys}
        c.log(f"int8 profile {set_name}: done")
    return out


def run_int8(checkpoint: Path, fp32: Path, work: Path, *, data_dir: Path = c.DATA_DIR, repeats: int = 3,
             keys: Sequence[str] = tuple(CANDIDATES), trained: bool = True, rows: Optional[int] = None,
             profile_rows: int = 2000, pipeline: bool = True) -> Dict[str, Any]:
    """The whole int8 part: files, text sets, speed, profiles, accuracy."""
    from mlbert.runtime.cpus import CpuFeatures

    started = time.monotonic()
    paths = build_candidates(fp32, checkpoint, work / "files", keys, data_dir)
    paths["checkpoint"] = checkpoint
    tweets = tweet_length_set(fp32, data_dir, work)
    # Plain TSV copies (cut to ``rows``), so no contender pays for decompressing.
    sets = {k: c.make_input(v, min(rows or 10**9, c.count_text_rows(v)), work)
            for k, v in {"goemotions": data_dir / "test.tsv.gz", "tweet-length": tweets}.items()}
    lengths = {k: bi.token_lengths(fp32, v)[0] for k, v in sets.items()}
    label_names = data_dir / "emotions.txt"
    results: Dict[str, Any] = {
        # benchmarks/force_avx2.py runs this with onnxruntime held to its AVX2 kernels: judge by that kind.
        "cpu": os.environ.get("MLB_BENCH_FORCED_INT8_PATH") or CpuFeatures.here().int8_path,
        "forced": bool(os.environ.get("MLB_BENCH_FORCED_INT8_PATH")), "keys": list(keys), "default": DEFAULT,
        "files": {k: {"path": str(p), "mb": p.stat().st_size / 1e6} for k, p in paths.items() if k in keys},
        "sets": {k: {"path": str(v), "rows": int(len(lengths[k])), "mean_tokens": float(lengths[k].mean())}
                 for k, v in sets.items()},
        "tweet_min_tokens": TWEET_MIN_TOKENS,
    }
    results["profiles"] = run_profiles(sets, paths, keys, profile_rows)
    results["speed"] = run_speed(sets, paths, keys, work, repeats, label_names, pipeline)
    if trained:
        results["accuracy"] = run_accuracy(sets, paths, keys, label_names)
    results["elapsed_s"] = time.monotonic() - started
    return results


# =========================================================================== report


def _ratio(speed: Dict[str, Any], a: str, b: str) -> Optional[float]:
    if a in speed and b in speed:
        return speed[a]["rows_per_s"] / speed[b]["rows_per_s"]
    return None


def targets(results: Dict[str, Any]) -> List[List[str]]:
    """Rows for the targets table (issue 12), for this machine kind."""
    need = TARGETS.get(results["cpu"])
    rows: List[List[str]] = []
    for set_name, speed in results["speed"].items():
        title = f"{set_name} ({results['sets'][set_name]['mean_tokens']:.1f} tokens/row)"
        for what, other, idx in (("fp32 mlb-batch", "mlb-batch-fp32", 0), ("transformers pipeline fp32, batch 32",
                                                                          "pipeline-32", 1)):
            value = _ratio(speed, f"mlb-batch-{DEFAULT}", other)
            if value is None:
                continue
            goal = f" >= {need[idx]}x" if need else ""
            status = ("met" if value >= need[idx] else "NOT met") if need else "no target for this CPU kind"
            rows.append([f"mlb-batch int8 / {what}{goal}, {title}", f"{value:.2f}x", status])
    for set_name, acc in (results.get("accuracy") or {}).items():
        d = {k: 100 * (acc[DEFAULT][k] - acc["fp32"][k]) for k in ("micro_f1", "samples_jaccard", "macro_f1")}
        ok = d["micro_f1"] >= -1.0 and d["samples_jaccard"] >= -1.0 and d["macro_f1"] >= -1.5
        rows.append([f"int8 within 1 point of fp32 (micro-F1, Jaccard; macro-F1 1.5), {set_name}",
                     f"micro-F1 {d['micro_f1']:+.2f}, Jaccard {d['samples_jaccard']:+.2f}, macro-F1 {d['macro_f1']:+.2f}",
                     "met" if ok else "NOT met"])
    return rows


def avx2_estimate(results: Dict[str, Any]) -> str:
    """What these profiles say about an AVX2-only CPU, under a stated assumption (not a measurement).

    AVX2 has no int8 dot product: a U8S8 product takes VPMADDUBSW + VPMADDWD (+ an add) per
    32 multiply-adds where AVX-512 VNNI takes one VPDPBUSD, so with two vector multiply pipes
    an AVX2 core does about half the int8 multiply-adds per cycle of a VNNI core, while both
    do the same fp32 FMAs per cycle (two 256-bit FMA pipes: Zen 3, and Zen 4 splitting 512-bit
    instructions). So on AVX2 the int8 products take ~2x their time here and the rest the
    same: model-time ratio ~ F / (2 P + O), and at most F / O however fast the products were.
    """
    lines = ["### What these profiles imply for an AVX2-only CPU (an estimate, not a measurement)\n",
             "Assumption: an AVX2 core does about half the int8 multiply-adds per cycle of an AVX-512 VNNI core "
             "(VPMADDUBSW + VPMADDWD per 32 products against one VPDPBUSD) and the same fp32 FMAs per cycle (two "
             "256-bit FMA pipes on Zen 3 and Zen 4), so int8 matrix products take ~2x their time here and every other "
             "operator the same. F = the fp32 file's kernel time, P = the int8 file's integer matrix products, O = its "
             "other operators:\n"]
    rows = []
    for s, prof in results["profiles"].items():
        f = prof["fp32"]["kernel_s"]
        # u8u8 runs widening kernels on both CPUs, not VPMADDUBSW: the assumption does not cover it.
        for key in [k for k in results["keys"] if k not in ("fp32", "fp32fused", "u8u8") and k in prof]:
            p_ = prof[key]["groups"].get("int8 matrix products", 0.0)
            o = prof[key]["kernel_s"] - p_
            rows.append([s, CANDIDATES[key][0], f"{f / prof[key]['kernel_s']:.2f}x", f"{f / (2 * p_ + o):.2f}x",
                         f"{f / o:.2f}x" if o else "n/a"])
    lines.append(c.md_table(["texts", "file", "int8 / fp32 model time here", "estimated on AVX2: F / (2P + O)",
                             "bound on AVX2 however fast the products: F / O"], rows))
    return "\n".join(lines) + "\n"


def report(results: Dict[str, Any]) -> str:
    out: List[str] = []
    sets = results["sets"]
    keys = results["keys"]
    out.append(f"Files (all from the same fp32 file; `mlb-export --quantize int8` writes `{DEFAULT}`):\n")
    out.append(c.md_table(["file", "made by", "MB"],
                          [[CANDIDATES[k][0], CANDIDATES[k][1], f"{results['files'][k]['mb']:.1f}"] for k in keys]))
    out.append("\nText sets: " + "; ".join(f"**{k}**: {v['rows']:,} rows, {v['mean_tokens']:.1f} tokens per row"
                                         for k, v in sets.items())
               + f" (tweet-length = GoEmotions dev comments of {results['tweet_min_tokens']} tokens or more).\n")
    header = ["file"]
    for s in sets:
        header += [f"{s} rows/s", f"{s} vs fp32"]
    rows = []
    titles = {f"mlb-batch-{k}": f"mlb-batch, {CANDIDATES[k][0]}" for k in keys}
    first = results["speed"][next(iter(sets))]
    # mlb-eval ran on the default file of its run (results.json keeps it under that file's key).
    evaluated = next((k for k in keys if f"mlb-eval-{k}" in first), DEFAULT)
    titles.update({f"mlb-eval-{evaluated}": f"mlb-eval, {CANDIDATES[evaluated][0]} (its own rows/s: scoring only)",
                   "pipeline-32": "transformers pipeline fp32, batch 32"})
    for name, title in titles.items():
        if not all(name in results["speed"][s] for s in sets):
            continue
        row = [title]
        for s in sets:
            sp = results["speed"][s]
            ratio = _ratio(sp, name, "mlb-batch-fp32")
            row += [c.fmt(sp[name]["rows_per_s"]), f"{ratio:.2f}x" if ratio else ""]
        rows.append(row)
    out.append("### Speed\n")
    out.append(c.md_table(header, rows))
    out.append("\nrows/s: rows over the median processing seconds of "
               f"{results['speed'][next(iter(sets))]['mlb-batch-fp32']['repeats']} runs (mlb-batch's summary line: read, "
               "tokenize, run, write; the pipeline: the same, timed inside the process; mlb-eval: its \"Scored\" line, "
               "which also computes the metrics). Whole processes including start-up (mlb-batch int8 / fp32): "
               + "; ".join(f"{s} {results['speed'][s][f'mlb-batch-{DEFAULT}']['rows_per_s_wall']:,.0f} / "
                           f"{results['speed'][s]['mlb-batch-fp32']['rows_per_s_wall']:,.0f} rows/s" for s in sets)
               + (", mlb-eval " + "; ".join(f"{s} {results['speed'][s][f'mlb-eval-{evaluated}']['rows_per_s_wall']:,.0f}"
                                            for s in sets) + " rows/s." if f"mlb-eval-{evaluated}" in
                  results["speed"][next(iter(sets))] else "."))
    out.append("\n### Where the time goes (onnxruntime profiler, kernel time per operator group)\n")
    for s in sets:
        prof = results["profiles"][s]
        out.append(f"{s}, first {prof[keys[0]]['rows']:,} rows:\n")
        out.append(op_profile.table(prof, {k: CANDIDATES[k][0] for k in keys}))
        out.append("")
    if results["cpu"] == "avx512_vnni":
        out.append(avx2_estimate(results))
    acc = results.get("accuracy")
    if acc:
        out.append("### Accuracy at the saved thresholds (points against the fp32 file)\n")
        rows = []
        for k in keys:
            row = [CANDIDATES[k][0]]
            for s in sets:
                a, f = acc[s][k], acc[s]["fp32"]
                row.append(f"{a['micro_f1']:.4f} / {a['macro_f1']:.4f} / {a['samples_jaccard']:.4f}" if k == "fp32" else
                           f"{100 * (a['micro_f1'] - f['micro_f1']):+.2f} / {100 * (a['macro_f1'] - f['macro_f1']):+.2f}"
                           f" / {100 * (a['samples_jaccard'] - f['samples_jaccard']):+.2f}")
            rows.append(row)
        out.append(c.md_table(["file"] + [f"{s}: micro-F1 / macro-F1 / Jaccard" for s in sets], rows))
        out.append("")
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--fp32", type=Path, required=True, help="the fp32 file mlb-export wrote from --checkpoint")
    p.add_argument("--work", type=Path, default=c.WORK_DIR / "int8")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", type=int, help="cut each text set to N rows")
    p.add_argument("--candidates", default=",".join(CANDIDATES), help="comma-separated keys (fp32 always runs)")
    p.add_argument("--no-accuracy", action="store_true", help="speed and profile only (e.g. a random head)")
    p.add_argument("--no-pipeline", action="store_true")
    p.add_argument("--json", type=Path, help="write the raw results here")
    p.add_argument("--doc", type=Path, help="write the tables as a document (machine, command, targets) here")
    a = p.parse_args(argv)
    keys = ["fp32"] + [k for k in a.candidates.split(",") if k and k != "fp32"]
    results = run_int8(a.checkpoint, a.fp32, a.work, repeats=a.repeats, keys=keys, trained=not a.no_accuracy,
                       rows=a.rows, pipeline=not a.no_pipeline)
    if a.json:
        a.json.write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    text = report(results) + "\n" + c.md_table(["target", "measured", "status"], targets(results))
    print(text)
    if a.doc:
        a.doc.write_text(document(results, text, argv if argv is not None else sys.argv[1:]), encoding="utf-8")
        c.log(f"wrote {c.shown_path(str(a.doc))}")
    return 0


def document(results: Dict[str, Any], text: str, argv: Sequence[str]) -> str:
    """The report as a stand-alone page: what ran it, on which machine, with which kernels."""
    m = c.machine_info()
    command = " ".join(["python benchmarks/bench_int8.py", *[c.shown_path(x) for x in argv]])
    if results.get("forced"):
        command = f"python benchmarks/force_avx2.py -- {command}"
    kernels = (f"onnxruntime and PyTorch held to their **{results['cpu']}** kernels by `benchmarks/force_avx2.py` "
               "(the same cores, clocks and caches; other kernels)" if results.get("forced")
               else f"int8 kernel path `{results['cpu']}`")
    return (f"# int8 schemes side by side: {kernels}\n\n"
            f"Written by `{command}`, finished {m['date']}, in {results['elapsed_s'] / 60:.1f} minutes, on "
            f"{c.machine_line(m)}.\n\n" + text + "\n")


if __name__ == "__main__":
    sys.exit(main())
