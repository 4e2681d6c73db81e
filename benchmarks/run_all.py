"""The benchmark suite's one entry command: inference, distance to the limit, accuracy, training cost.

Writes docs/BENCHMARKS.md (tables, machine, versions, exact command, date) and
docs/img/bench_*.png; prints the tables on stdout and progress on stderr; keeps the raw
numbers in WORK/results.json (``--from-json`` re-renders the document from them).

\b
Full run (the numbers in docs/BENCHMARKS.md; about 25-30 minutes on 2 quiet cores):
    .venv/bin/python benchmarks/run_all.py --checkpoint runs/goemotions

\b
With ONNX files already exported (skips the export, ~2 minutes):
    .venv/bin/python benchmarks/run_all.py --checkpoint runs/goemotions \\
        --fp32 runs/goemotions-export/model-none.onnx --int8 runs/goemotions-export/model-int8.onnx

\b
Quick smoke run (500 rows, 1 repeat, no 100k file, small training; writes WORK/BENCHMARKS-quick.md;
without --checkpoint it makes the packaged base model with a random 28-label head and skips accuracy):
    .venv/bin/python benchmarks/run_all.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import common as c  # noqa: E402
import doc_sections  # noqa: E402

DOC = c.REPO / "docs" / "BENCHMARKS.md"
IMG = c.REPO / "docs" / "img"
PARTS = ("inference", "int8", "accuracy", "training", "ray")
README = c.REPO / "README.md"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1].replace("\\b\n", ""))
    p.add_argument("--checkpoint", type=Path, help="trained mlb-train output folder (default: runs/goemotions if "
                   "it holds a model; --quick without one uses a random head)")
    p.add_argument("--fp32", type=Path, help="fp32 ONNX from mlb-export (default: export into WORK/models)")
    p.add_argument("--int8", type=Path, help="int8 ONNX from mlb-export --quantize int8 (default: export into WORK/models)")
    p.add_argument("--work", type=Path, default=c.WORK_DIR,
                   help="scratch folder: inputs, outputs, exported models, training runs [default: %(default)s]")
    p.add_argument("--data", type=Path, default=c.DATA_DIR, help="GoEmotions folder [default: %(default)s]")
    p.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 repeat; does not touch docs/")
    p.add_argument("--skip", action="append", default=[], choices=PARTS, help="leave a part out (repeatable)")
    p.add_argument("--repeats", type=int, help="runs per contender on the test file [3; quick 1]")
    p.add_argument("--rows", type=int, help="rows of the test file to use [all 5,427; quick 500]")
    p.add_argument("--recipe-rows", type=int, help="the recipe runs on the first N rows [2000; quick: --rows]")
    p.add_argument("--big-rows", type=int, help="the repeated file's size, 0 to skip [100000; quick 0]")
    p.add_argument("--big-repeats", type=int, default=1, help="runs per contender on the big file [%(default)s]")
    p.add_argument("--train-rows", type=int, help="training sample [2000; quick 200]")
    p.add_argument("--epochs", type=float, default=3.0, help="training-cost epochs for both setups [%(default)s; at 1 epoch on 2,000 rows neither learns enough to compare]")
    p.add_argument("--eval-rows", type=int, help="validation/test rows for the training comparison [1000; quick 200]")
    p.add_argument("--accuracy-rows", type=int, help="test rows for the accuracy section [all; quick 500]")
    p.add_argument("--doc", type=Path, help="where to write the Markdown [docs/BENCHMARKS.md; quick WORK/BENCHMARKS-quick.md]")
    p.add_argument("--update", action="store_true",
                   help="rerun only the parts not skipped and merge them into WORK/results.json (the rest is kept)")
    p.add_argument("--from-json", type=Path, help="re-render the document from a results.json; run nothing")
    a = p.parse_args(argv)
    q = a.quick
    a.repeats = a.repeats or (1 if q else 3)
    a.rows = a.rows or (500 if q else None)
    a.recipe_rows = a.recipe_rows or (a.rows if q else 2000)
    a.big_rows = (0 if q else 100_000) if a.big_rows is None else a.big_rows
    a.train_rows = a.train_rows or (200 if q else 2000)
    a.eval_rows = a.eval_rows or (200 if q else 1000)
    a.accuracy_rows = a.accuracy_rows or (500 if q else None)
    a.doc = a.doc or (a.work / "BENCHMARKS-quick.md" if q else DOC)
    return a


def resolve_models(a: argparse.Namespace) -> Dict[str, Any]:
    """The checkpoint and its two ONNX files; ``trained`` is False for the random-head stand-in."""
    checkpoint = a.checkpoint
    default = c.REPO / "runs" / "goemotions"
    if checkpoint is None and (default / "model.safetensors").exists() and (default / "mlb.json").exists():
        checkpoint = default
    trained = True
    if checkpoint is None:
        if not a.quick:
            raise SystemExit("benchmarks: --checkpoint is required (train one with benchmarks/train_goemotions.sh), "
                             "or use --quick")
        c.log("no trained checkpoint: the packaged base model with a random 28-label head (speed only)")
        checkpoint = c.make_random_checkpoint(a.work / "models" / "random-checkpoint", c.label_names(a.data))
        trained = False
    if not (checkpoint / "config.json").exists():
        raise SystemExit(f"benchmarks: {checkpoint} is not a checkpoint folder (no config.json)")
    stem = "random" if not trained else checkpoint.resolve().name
    fp32 = a.fp32 or c.export_onnx(checkpoint, a.work / "models" / f"{stem}-fp32.onnx", "none")
    int8 = a.int8 or c.export_onnx(checkpoint, a.work / "models" / f"{stem}-int8.onnx", "int8")
    return {"checkpoint": checkpoint, "fp32": fp32, "int8": int8, "trained": trained}


def attainable_fp32() -> Optional[float]:
    """fp32 GEMM rate torch reaches on this machine (1024^3 matmuls for ~2 s), a measured yardstick."""
    code = ("import time,torch;from mlbert.runtime.cpus import available_cpus;torch.set_num_threads(available_cpus());"
            "a=torch.randn(1024,1024);b=torch.randn(1024,1024);[a@b for _ in range(3)];n=0;t=time.perf_counter()\n"
            "while time.perf_counter()-t<2: a@b; n+=1\n"
            "print(2*1024**3*n/(time.perf_counter()-t))")
    r = c.run_child([sys.executable, "-c", code], timeout=120)
    try:
        return float(r["stdout"].strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def render(results: Dict[str, Any]) -> str:
    import bench_accuracy
    import bench_inference
    import bench_int8
    import bench_training

    m = results["machine"]
    peaks = results["peaks"]
    out: List[str] = [f"# {m.get('kind', 'this machine')}: {m['cpu']}, {m['cores']} cores", ""]
    out.append(f"Generated by `{results['command']}` on {m['date']} in {results['elapsed_s'] / 60:.1f} minutes. "
               + ("Every number below comes from that run" if not results.get("updates") else
                  "Every number below comes from that run, except the parts rerun later, which *How to reproduce* "
                  "names with their commands")
               + " (raw numbers: `results.json` in the work folder). "
               "Rerun before relying on the last digit: the machine is a 2-core VM.")
    if results.get("quick"):
        out.append("\n**Quick smoke run: small sizes and one repeat; not the published numbers.**")
    out.append("\n## Machine\n")
    v = m["versions"]
    out.append(f"- CPU: {m['cpu']} (family {m['cpu_family']}, model {m['cpu_model']}; Zen 4 when family 25 and AVX-512 "
               f"are present), {m['cores']} usable cores at {m['mhz']:.0f} MHz (/proc/cpuinfo), AVX-512 "
               f"{'yes' if m['avx512f'] else 'no'}, AVX-512 VNNI {'yes' if m['avx512_vnni'] else 'no'}, "
               f"{m['mem_gib']:.0f} GiB RAM.")
    if "instruction_sets" in m:
        out.append(f"- Instruction sets (/proc/cpuinfo): {', '.join(m['instruction_sets']) or 'none of those recorded'}; "
                   f"onnxruntime's int8 path here: `{m['int8_path']}` (`batch.cpus.CpuFeatures`).")
    out.append("- lscpu: " + "; ".join(c.sanitize(line) for line in m["lscpu"]))
    out.append(f"- Load average at start {results['load_start'][0]:.2f}, at end {results['load_end'][0]:.2f} "
               "(1-minute; 2.0 means both cores busy).")
    out.append(f"- Python {m['python']}, " + ", ".join(f"{k} {val}" for k, val in v.items()) + f"; {m['platform']}.")
    out.append(f"- Peak arithmetic rate: fp32 {peaks['fp32_text']}; int8 {peaks['int8_text']}. "
               + (f"Measured yardstick: torch fp32 1024x1024 matmul reaches {results['attainable_fp32'] / 1e9:.0f} "
                  f"GFLOP/s ({100 * results['attainable_fp32'] / peaks['fp32']:.0f}% of the fp32 peak)."
                  if results.get("attainable_fp32") else ""))
    models = results["models"]
    out.append("\n## Models\n")
    out.append(f"- Checkpoint: `{models['checkpoint']}`" + ("" if models["trained"] else
               " (the packaged base model with a **random** 28-label head: speed runs only, no accuracy)") + ".")
    out.append(f"- fp32 ONNX: `{c.shown_path(models['fp32'])}` ({models['fp32_mb']:.1f} MB); int8 ONNX: "
               f"`{c.shown_path(models['int8'])}` "
               f"({models['int8_mb']:.1f} MB), both written by `mlb-export` (`mlbert.exporter.export.export_model`).")
    out.append("- Every inference contender runs this same model: PyTorch contenders load the checkpoint, optimum "
               "loads the fp32 file, mlb-batch loads the fp32 and int8 files.")

    rows: List[List[str]] = []
    if "inference" in results:
        rows += bench_inference.targets(results["inference"])
    if "int8" in results:
        rows += bench_int8.targets(results["int8"])
    if "accuracy" in results:
        rows += bench_accuracy.targets(results["accuracy"])
    if "training" in results:
        rows += bench_training.targets(results["training"])
    out.append("\n## Targets (issues 6 and 12)\n")
    out.append(c.md_table(["target", "measured", "status"], rows) if rows else "No part was run.")
    gaps = results.get("gaps") or []
    if gaps:
        out.append("\nGaps, with the numbers behind them:\n")
        out += [f"- {g}" for g in gaps]

    if "inference" in results:
        out.append("\n## Inference\n")
        out.append("\n\n".join(f"![{title}](img/{Path(p).name})" for title, p in
                                 zip(("rows per second", "peak memory"), results.get("plots") or [])) + "\n")
        out.append(bench_inference.report(results["inference"], peaks))
    if "int8" in results:
        out.append("\n## int8 schemes on GoEmotions-length and tweet-length texts (issue 12)\n")
        out.append(bench_int8.report(results["int8"]))
    if "accuracy" in results:
        out.append("\n## Accuracy\n")
        out.append(bench_accuracy.report(results["accuracy"]))
    elif not models["trained"]:
        out.append("\n## Accuracy\n\nNot run: no trained checkpoint (random head).\n")
    if "training" in results:
        out.append("\n## Training cost\n")
        out.append(bench_training.report(results["training"]))
        tr = results["training"]
        out.append(f"Commands: recipe `{tr['recipe_command']}`; mlb `{tr['runs']['mlb-train']['command']}` "
                   "\n")
    if "ray" in results:
        out.append("\n## Ray engine on this machine (issue 7)\n")
        out.append("`mlb-batch --engine ray` against the local engine on the int8 file, 3,000 GoEmotions rows, written by "
                   f"`{results['ray']['command']}` ([BENCHMARKS-ray.md](BENCHMARKS-ray.md) is the longer study: 30,000 rows, "
                   "2 nodes, when Ray pays). On a file this small, Ray's start-up (cluster, actors, model load in "
                   "each) outweighs what it scores; the point here is that its output is byte-identical and what "
                   "that costs.\n")
        out.append(results["ray"]["table"] or f"bench_ray.py failed (exit {results['ray']['returncode']}).")
    out.append("\n## How to reproduce\n")
    out.append("```\n.venv/bin/pip install -e '.[test]'   # see README\n" + results["command"] + "\n```\n")
    for update in results.get("updates", []):
        took = f" in {update['elapsed_s'] / 60:.1f} minutes" if "elapsed_s" in update else ""
        why = f" {update['why']}" if update.get("why") else ""
        out.append(f"Part(s) {', '.join(update['parts'])} rerun on {update['date']}{took} by `{update['command']}` "
                   f"(the other parts are from the run above).{why}\n")
    out.append("Method: each inference contender is a fresh process (`benchmarks/bench_inference.py --worker ...`, or "
               "the real `python -m mlbert.batch` CLI for mlb-batch), run round-robin with the starting contender rotating "
               "each repeat; medians are reported. Inputs are generated into the work folder at run time; nothing "
               "is committed.")
    return "\n".join(out) + "\n"


def summary(results: Dict[str, Any]) -> Dict[str, Any]:
    """The figures the machine-kinds tables show (``doc_sections``): GoEmotions test rows/s per contender."""
    m = results["machine"]
    test = (results.get("inference") or {}).get("sets", {}).get("test", {}).get("contenders", {})
    # The rows/s shown come from the inference part: dated by the run that last measured it.
    dated = [u["date"] for u in results.get("updates", []) if "inference" in u.get("parts", [])]
    return {
        "kind": m.get("int8_path", "unknown"), "title": m.get("kind", "this machine"),
        "cpu": f"{m['cpu']} (family {m['cpu_family']}, model {m['cpu_model']}), {m['cores']} cores",
        "date": (dated or [m["date"]])[-1][:10], "by": "`benchmarks/run_all.py`" + (" (quick run)" if results.get("quick") else ""),
        "rows_per_s": {name: round(s["rows_per_s"], 1) for name, s in test.items()
                       if name in {key for key, _ in doc_sections.HEADLINE_ROWS}},
        "int8_file": results["models"].get("int8_scheme", "int8"),
    }


def write_doc(results: Dict[str, Any], doc: Path) -> str:
    """This machine kind's section of ``doc`` (other kinds' sections kept); the README table when it is docs/."""
    body = doc_sections.demote(render(results))
    text = doc_sections.update_document(doc, results["machine"].get("int8_path", "unknown"), body, summary(results))
    if doc == DOC:
        doc_sections.update_readme(README, DOC)
    return text


def gap_notes(results: Dict[str, Any]) -> List[str]:
    """One line per target that is not met, with the numbers that explain it."""
    notes: List[str] = []
    inf = results.get("inference")
    if inf:
        test = inf["sets"]["test"]["contenders"]
        peaks = results["peaks"]
        for q in ("int8", "fp32"):
            s = test.get(f"mlb-batch-{q}")
            if s and s["padding"] >= 0.10:
                alts = inf.get("padding_alternatives") or []
                cur = next((a for a in alts if a["current"]), None)
                best = min(alts, key=lambda a: a["padding"]) if alts else None
                if cur and best:
                    notes.append(
                        f"Padding (mlb {q}): {100 * s['padding']:.1f}% of computed tokens. Rows here average "
                        f"{inf['sets']['test']['mean_tokens']:.1f} tokens, so rounding each row up to a multiple of "
                        f"{cur['multiple']} alone costs {100 * cur['rounding_only']:.1f}%; the rest comes from batches "
                        f"of {cur['budget']} tokens spanning several lengths. Multiple {best['multiple']} with budget "
                        f"{best['budget']} would give {100 * best['padding']:.1f}% with {best['calls']} session.run "
                        f"calls instead of {cur['calls']} (replayed, see the table under Distance to the limit); a "
                        "change for mlbert/runtime/bucketing.py's owner.")
                m1, m8 = test.get("mlb-model-int8-m1"), test.get("mlb-model-int8")
                if m1 and m8:
                    notes.append(
                        f"Measured what-if: the int8 model-only run with bucket multiple 1 computed "
                        f"{100 * m1['padding']:.1f}% padding and took {m1['seconds']:.2f} s against {m8['seconds']:.2f} s "
                        f"with the default multiple ({100 * (m8['seconds'] / m1['seconds'] - 1):+.0f}% rows/s).")
                break
        for q in ("int8", "fp32"):
            b, mo = test.get(f"mlb-batch-{q}"), test.get(f"mlb-model-{q}")
            if b and mo and b["seconds"] > 1.15 * mo["seconds"]:
                tok = mo.get("tokenize_seconds")
                notes.append(
                    f"End to end vs model ({q}): mlb-batch took {b['seconds']:.2f} s against {mo['seconds']:.2f} s of "
                    f"model time ({100 * (b['seconds'] / mo['seconds'] - 1):.0f}% over); tokenizing the same rows alone "
                    f"took {tok:.2f} s in the model-only run" + (" and is run serially with the model, not overlapped."
                                                                  if tok else "."))
        ref = test.get("mlb-batch-int8")
        if ref:
            s = ref
            notes.append(f"Context for the speed ratios: mlb-batch int8 computed {s['useful_flops_per_s'] / 1e9:.0f} "
                         f"useful GFLOP/s = {100 * s['useful_flops_per_s'] / peaks['int8']:.0f}% of the int8 peak; "
                         f"fp32 mlb-batch {test['mlb-batch-fp32']['useful_flops_per_s'] / 1e9:.0f} GFLOP/s = "
                         f"{100 * test['mlb-batch-fp32']['useful_flops_per_s'] / peaks['fp32']:.0f}% of the fp32 peak."
                         if "mlb-batch-fp32" in test else "")
    return [n for n in notes if n]


def main(argv: Optional[List[str]] = None) -> int:
    a = parse_args(argv)
    argv_used = sys.argv[1:] if argv is None else argv
    if a.from_json:
        results = json.loads(a.from_json.read_text(encoding="utf-8"))
        results["gaps"] = gap_notes(results)
        print(write_doc(results, a.doc))
        return 0
    started = time.monotonic()
    a.work.mkdir(parents=True, exist_ok=True)
    machine = c.machine_info()
    command = ".venv/bin/python benchmarks/run_all.py " + " ".join(shlex.quote(x) for x in argv_used)
    if a.update:
        results = json.loads((a.work / "results.json").read_text(encoding="utf-8"))
        rerun = [part for part in PARTS if part not in a.skip]
        results.setdefault("updates", []).append({"command": command, "parts": rerun, "date": machine["date"]})
        for part in rerun:
            results.pop(part, None)
        previous_elapsed = results.get("elapsed_s", 0.0)
    else:
        previous_elapsed = 0.0
        results = {
            "command": command,
            "quick": a.quick, "machine": machine, "peaks": c.cpu_peaks(machine), "load_start": list(os.getloadavg()),
        }
    c.log(f"work folder {a.work}; load average {os.getloadavg()[0]:.2f}")
    models = resolve_models(a)
    results["models"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in models.items()}
    results["models"]["fp32_mb"] = models["fp32"].stat().st_size / 1e6
    results["models"]["int8_mb"] = models["int8"].stat().st_size / 1e6
    quantization = c.read_header(models["int8"]).quantization
    results["models"]["int8_scheme"] = (f"`{quantization.get('config', '?')}` ({quantization.get('weights_dtype', '?')} "
                                        f"weights{', 7-bit' if quantization.get('reduce_range') else ''}"
                                        f"{', per-channel' if quantization.get('per_channel') else ''}"
                                        f"{', fused' if quantization.get('fused') else ''})")
    if not a.update or "attainable_fp32" not in results:
        results["attainable_fp32"] = attainable_fp32()

    if "inference" not in a.skip:
        import bench_inference

        results["inference"] = bench_inference.run_inference(
            models["checkpoint"], models["fp32"], models["int8"], a.work / "inference", rows=a.rows,
            big_rows=a.big_rows or None, repeats=a.repeats, big_repeats=a.big_repeats,
            contenders=list(bench_inference.CONTENDERS), data=a.data / "test.tsv.gz", recipe_rows=a.recipe_rows)
        print(bench_inference.report(results["inference"], results["peaks"]), flush=True)
    if "accuracy" not in a.skip and models["trained"]:
        import bench_accuracy

        results["accuracy"] = bench_accuracy.run_accuracy(models["checkpoint"], models["fp32"], models["int8"],
                                                          data=a.data / "test.tsv.gz", limit=a.accuracy_rows)
        print(bench_accuracy.report(results["accuracy"]), flush=True)
    if "int8" not in a.skip:
        import bench_int8

        results["int8"] = bench_int8.run_int8(models["checkpoint"], models["fp32"], a.work / "int8", data_dir=a.data,
                                              repeats=a.repeats, trained=models["trained"], rows=a.rows)
        print(bench_int8.report(results["int8"]), flush=True)
    if "training" not in a.skip:
        import bench_training

        results["training"] = bench_training.run_training(a.work / "training", train_rows=a.train_rows,
                                                          epochs=a.epochs, eval_rows=a.eval_rows, data=a.data)
        print(bench_training.report(results["training"]), flush=True)

    if "ray" not in a.skip and not a.quick:
        # The Ray engine against the local engine (issue 7): its own script, as a child, on the int8 file.
        c.log("ray engine vs local engine (benchmarks/bench_ray.py)")
        # Its table goes into this document only: docs/BENCHMARKS-ray.md is bench_ray's own, longer run.
        ray_run = c.run_child([sys.executable, str(c.REPO / "benchmarks" / "bench_ray.py"), "--model", str(models["int8"]),
                               "--rows", "3000"], timeout=1200)
        results["ray"] = {"command": f"python benchmarks/bench_ray.py --model {c.shown_path(models['int8'])} --rows 3000",
                          "table": ray_run["stdout"].strip(), "returncode": ray_run["rc"]}

    results["load_end"] = list(os.getloadavg())
    if a.update:
        results["elapsed_s"] = previous_elapsed
        results["updates"][-1]["elapsed_s"] = time.monotonic() - started
    else:
        results["elapsed_s"] = time.monotonic() - started
    results["gaps"] = gap_notes(results)
    if "inference" in results and not (a.update and "inference" in a.skip):
        import bench_inference

        img = IMG if a.doc == DOC else a.doc.parent / "img"
        results["plots"] = [str(p) for p in bench_inference.plot(results["inference"], img,
                                                                 suffix="-" + machine.get("int8_path", "unknown"))]
    (a.work / "results.json").write_text(json.dumps(results, indent=1, default=str), encoding="utf-8")
    write_doc(results, a.doc)
    import bench_accuracy
    import bench_inference
    import bench_int8
    import bench_training

    rows = (bench_inference.targets(results["inference"]) if "inference" in results else []) + \
        (bench_int8.targets(results["int8"]) if "int8" in results else []) + \
        (bench_accuracy.targets(results["accuracy"]) if "accuracy" in results else []) + \
        (bench_training.targets(results["training"]) if "training" in results else [])
    print("\n" + c.md_table(["target", "measured", "status"], rows))
    c.log(f"wrote {a.doc} and {a.work / 'results.json'} in {results['elapsed_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
