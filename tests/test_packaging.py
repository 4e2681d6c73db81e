"""setup.cfg's requirements as pip resolves them on each platform: one onnxruntime, and extras that hold what they say."""

from __future__ import annotations

import configparser
import os
from typing import Dict, List

import pytest
from packaging.requirements import Requirement

SETUP_CFG = os.path.join(os.path.dirname(__file__), os.pardir, "setup.cfg")

# (platform_system, platform_machine) as Python reports them on each platform.
PLATFORMS = {
    "linux-x86_64": ("Linux", "x86_64"),
    "linux-aarch64": ("Linux", "aarch64"),
    "macos-arm64": ("Darwin", "arm64"),
    "macos-x86_64": ("Darwin", "x86_64"),
    "windows-amd64": ("Windows", "AMD64"),
    "windows-arm64": ("Windows", "ARM64"),
}
# Where PyPI has onnxruntime-gpu wheels (checked with pip download --platform for 1.31.1).
GPU_WHEELS = {"linux-x86_64", "windows-amd64"}


def _config() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation())
    parser.read(SETUP_CFG)
    return parser


def _requirements(value: str) -> List[Requirement]:
    return [Requirement(line.strip()) for line in value.splitlines() if line.strip() and not line.strip().startswith("#")]


def _extras() -> Dict[str, List[Requirement]]:
    section = _config()["options.extras_require"]
    return {name: _requirements(section[name]) for name in section}


def _applies(requirement: Requirement, platform: str) -> bool:
    system, machine = PLATFORMS[platform]
    environment = {"platform_system": system, "platform_machine": machine, "sys_platform": system.lower()}
    return requirement.marker is None or requirement.marker.evaluate(environment)


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_exactly_one_onnxruntime_per_platform(platform):
    base = _requirements(_config()["options"]["install_requires"])
    chosen = [r.name for r in base if r.name in ("onnxruntime", "onnxruntime-gpu") and _applies(r, platform)]
    expected = "onnxruntime-gpu" if platform in GPU_WHEELS else "onnxruntime"
    assert chosen == [expected]


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_cuda_extra_only_where_onnxruntime_gpu_has_wheels(platform):
    cuda = [r for r in _extras()["cuda"] if _applies(r, platform)]
    assert bool(cuda) == (platform in GPU_WHEELS)


def test_all_extra_holds_everything_a_user_can_run():
    extras = _extras()
    names = {r.name for r in extras["all"]}
    for part in ("train", "export", "ray", "parquet", "cloud"):
        missing = {r.name for r in extras[part]} - names
        assert not missing, f"all lacks {part}'s {sorted(missing)}"
    assert not {r.name for r in extras["all"]} & {"moto", "pytest"}, "test tools are not something a user runs"


def test_runtime_requirements_hold_no_torch_or_transformers():
    base = {r.name for r in _requirements(_config()["options"]["install_requires"])}
    assert not base & {"torch", "transformers", "optimum", "optimum-onnx", "datasets"}
