"""How many CPUs this process may really use.

``os.cpu_count()`` ignores CPU affinity and container quotas, so a cron job in a 2-CPU
container would start 64 threads and thrash; threads follow ``sched_getaffinity`` and the
cgroup ``cpu.max`` quota instead. Stdlib only.
"""

from __future__ import annotations

import math
import os
from typing import Optional


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        count = min(count, max(1, math.ceil(quota)))
    return max(1, count)


def cgroup_cpu_quota(root: str = "/sys/fs/cgroup") -> Optional[float]:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 CFS files), None if unlimited."""
    try:
        with open(os.path.join(root, "cpu.max"), "r", encoding="ascii") as f:
            quota, _, period = f.read().strip().partition(" ")
        if quota != "max":
            return int(quota) / int(period or 100000)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us"), "r", encoding="ascii") as f:
            quota_us = int(f.read().strip())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us"), "r", encoding="ascii") as f:
            period_us = int(f.read().strip())
        if quota_us > 0 and period_us > 0:
            return quota_us / period_us
    except (OSError, ValueError):
        pass
    return None
