"""The int8 candidate files bench_int8 and bench_row_agreement compare, all made from ONE fp32 file.

Every candidate is made by the exporter's own steps (``exporter.quantize.fuse_encoder`` and
``quantize_int8``, the code behind ``mlb-export --quantize int8 --quantize-config NAME``), so
the files differ only in how they were quantized; ``int8_handmade`` makes the files that
measure roads the exporter does not take (static QDQ, products left in fp32, MatMulNBits).
The calibrated row-wise scheme reads the first ``exporter.quantize.CALIBRATION_MAX_ROWS``
validation texts, as ``mlb-export --validate-on dev.tsv.gz`` does.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, Sequence, Tuple

import common as c
import int8_handmade

TWEET_MIN_TOKENS = 20
CALIBRATION_ROWS = 256
DEFAULT = "rowwise"  # exporter.quantize.DEFAULT_INT8_SCHEME, the file mlb-export writes
# key -> (title, how it is made). Keys are plain words: they name files and contenders.
CANDIDATES: Dict[str, Tuple[str, str]] = {
    "fp32": ("fp32", "mlb-export, no quantization"),
    "fp32fused": ("fp32, transformer fusions", "fp32 graph after onnxruntime's transformer fusions"),
    "previous": ("int8 before: S8 8-bit per-tensor, unfused", "the settings of optimum's avx512_vnni preset, "
                 "mlb-export's int8 on VNNI machines before this change"),
    "u8u8": ("int8 u8u8: U8 weights per-tensor, unfused", "--quantize-config u8u8 (optimum's avx2 preset, "
             "mlb-export's int8 on AVX2 machines before)"),
    "rowwise": ("int8 rowwise: per-row activation scales, smoothed, GPTQ 7-bit weights (default)",
                "--quantize-config rowwise, the default since issue 25"),
    "rtn": ("int8 rowwise-rtn: per-row activation scales, 7-bit weights rounded to nearest",
            "--quantize-config rowwise-rtn (no calibration)"),
    "unfused": ("int8 unfused: S8 7-bit per-channel, one activation scale per batch",
                "--quantize-config unfused, the default before issue 25"),
    "vnni": ("int8 vnni: fused, S8 8-bit per-channel", "--quantize-config vnni"),
    "portable": ("int8 portable: fused, S8 7-bit per-channel", "--quantize-config portable (the default before the "
                 "measurements below)"),
    "noattn": ("int8 fused except attention: S8 7-bit per-channel", "as portable, but attention left as "
               "MatMuls (quantized one by one) instead of one QAttention"),
    **int8_handmade.TITLES,
}


def build_candidates(fp32: Path, checkpoint: Path, folder: Path, keys: Sequence[str],
                     data_dir: Path = c.DATA_DIR) -> Dict[str, Path]:
    """Every candidate file from ``fp32`` (the exporter's steps; headers copied from the fp32 file)."""
    import onnx

    from mlbert.modelfile import attach_header
    from mlbert.exporter import quantize as q

    folder.mkdir(parents=True, exist_ok=True)
    hf_config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    schemes = dict(q.INT8_SCHEMES)
    schemes["rtn"] = q.INT8_SCHEMES["rowwise-rtn"]
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
        if key == "fp32fused" or (scheme is not None and scheme.fuse):
            q.fuse_encoder(str(fp32), str(fused), hf_config, attention=scheme is None or scheme.fuse_attention)
            source = fused
        if key in int8_handmade.TITLES:
            header.quantization = int8_handmade.build(key, fp32, fused, out, data_dir, hf_config)
        elif scheme is not None:
            calibration = c.calibration_texts(fp32, data_dir) if scheme.calibrated else None
            done = q.quantize_int8(str(source), str(out), scheme, calibration)
            header.quantization = {k: v for k, v in done.items() if k != "path"}
        else:
            source.replace(out)
        model = onnx.load(str(out))
        initializers = {i.name for i in model.graph.initializer}
        header.input_names = [i.name for i in model.graph.input if i.name not in initializers]
        attach_header(model, header)
        onnx.save(model, str(out))
        fused.unlink(missing_ok=True)
    return paths


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
