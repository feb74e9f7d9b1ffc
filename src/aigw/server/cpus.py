"""How many CPUs this process may really use: the default number of gateway workers.

``os.cpu_count()`` is the host's count. In a container limited to 2 CPUs on a 64-core node it
says 64, and 64 workers would share 2 CPUs' worth of time (more memory, more Redis and upstream
connections, worse latency). What bounds the process is the smallest of: the CPUs it may be
scheduled on (its affinity mask, which ``--cpuset-cpus`` sets) and its cgroup's CPU quota
(``--cpus``, a Kubernetes CPU limit): ``cpu.max`` on cgroup v2, ``cpu.cfs_quota_us`` /
``cpu.cfs_period_us`` on v1. A fractional quota rounds up (1.5 CPUs: 2 workers), never below 1.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process can use: affinity, bounded by the cgroup quota when there is one."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The cgroup's CPU limit in CPUs, or None when it has none (or it cannot be read)."""
    v2 = _read(cgroup_root / "cpu.max")  # "max 100000" or "150000 100000"
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    v1 = cgroup_root / "cpu"
    return _ratio(_read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us"))


def _ratio(quota: str | None, period: str | None) -> float | None:
    if quota is None or period is None or quota in ("max", "-1"):
        return None
    try:
        limit, length = int(quota), int(period)
    except ValueError:
        return None
    return limit / length if limit > 0 and length > 0 else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None
