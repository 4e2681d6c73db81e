"""The arithmetic behind "distance to the limit": this CPU's peak fp32 and int8 rates, and the
FLOPs a BERT-style encoder spends per token, so a measured rows/s can be read as a share of what
the machine could do at most."""

from __future__ import annotations

from typing import Any, Dict


def cpu_peaks(machine: Dict[str, Any]) -> Dict[str, Any]:
    """Peak arithmetic rates of this CPU, with the derivation spelled out.

    AMD Zen 4 (family 25, AVX-512): two 256-bit FMA pipes per core (512-bit
    instructions are split over two cycles), so 2 x 8 fp32 FMAs = 32 fp32 FLOP per
    cycle per core. int8 dot products (AVX-512 VNNI ``vpdpbusd``) also issue on both
    pipes: 2 x 32 int8 multiply-adds = 128 int8 ops per cycle per core. Without
    AVX-512 on another CPU the same pipes give the same figure for AVX2 + FMA
    (2 x 256-bit), so the formula holds for Zen 2-4 and most Intel client cores; big
    Intel server cores with two 512-bit FMA units reach twice this.
    The clock is /proc/cpuinfo's "cpu MHz" (the nominal clock under a hypervisor; a
    boosting core may run faster, so the peak may be understated by up to ~1.4x).
    """
    ghz = (machine.get("mhz") or 0.0) / 1000.0
    cores = int(machine.get("cores") or 1)
    fp32_per_cycle = 32 if (machine.get("fma") or machine.get("avx512f")) else 8
    int8_per_cycle = 128 if machine.get("avx512_vnni") else (64 if machine.get("avx2") else 16)
    fp32 = cores * ghz * 1e9 * fp32_per_cycle
    int8 = cores * ghz * 1e9 * int8_per_cycle
    return {
        "ghz": ghz, "cores": cores, "fp32_flop_per_cycle": fp32_per_cycle, "int8_op_per_cycle": int8_per_cycle,
        "fp32": fp32, "int8": int8,
        "fp32_text": f"{cores} cores x {ghz:.2f} GHz x {fp32_per_cycle} FLOP/cycle (2 FMA pipes x 8 fp32 lanes x 2) = {fp32 / 1e9:.0f} GFLOP/s",
        "int8_text": f"{cores} cores x {ghz:.2f} GHz x {int8_per_cycle} op/cycle (2 pipes x 32 int8 VNNI multiply-adds x 2) = {int8 / 1e9:.0f} GOP/s",
    }


def encoder_flops(config: Dict[str, Any]) -> Dict[str, float]:
    """FLOPs of a BERT-style encoder per token, from its config.json.

    Per layer and token, the dense matmuls are Q, K, V and output projections (4 h^2
    multiply-adds) and the feed-forward pair (2 h i), so 2 x (4 h^2 + 2 h i) FLOPs. The
    attention scores (Q K^T) and the weighted sum (A V) add 2 x 2 x s x h FLOPs per
    token, where s is the sequence length the token attends over. Embedding lookups,
    layer norms, softmax and GELU are element-wise (<2% here) and not counted; the
    pooler and head run once per row (2 h^2 + 2 h L) and are not per token.
    """
    h = int(config["hidden_size"])
    i = int(config.get("intermediate_size", 4 * h))
    layers = int(config["num_hidden_layers"])
    return {
        "hidden": h, "intermediate": i, "layers": layers,
        "matmul_per_token": 2.0 * layers * (4 * h * h + 2 * h * i),
        "attention_per_token_per_position": 4.0 * layers * h,
    }


def flops_for(flops: Dict[str, float], lengths_sum: float, lengths_sq_sum: float) -> float:
    """Useful FLOPs for rows whose real lengths sum to ``lengths_sum`` (sum of squares for attention)."""
    return flops["matmul_per_token"] * lengths_sum + flops["attention_per_token_per_position"] * lengths_sq_sum
