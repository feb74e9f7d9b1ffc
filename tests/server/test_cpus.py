"""The default worker count follows the CPUs a container may use, not the host's count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aigw.server.cpus import available_cpus, cgroup_cpu_quota


def _v2(root: Path, content: str) -> Path:
    (root / "cpu.max").write_text(content)
    return root


def _v1(root: Path, quota: str, period: str) -> Path:
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota)
    (root / "cpu" / "cpu.cfs_period_us").write_text(period)
    return root


@pytest.mark.parametrize(
    ("content", "cpus"),
    [("max 100000\n", None), ("200000 100000\n", 2.0), ("150000 100000", 1.5), ("0 100000", None)],
)
def test_cgroup_v2_quota(tmp_path: Path, content: str, cpus: float | None) -> None:
    assert cgroup_cpu_quota(_v2(tmp_path, content)) == cpus


@pytest.mark.parametrize(
    ("quota", "period", "cpus"),
    [("-1", "100000", None), ("50000", "100000", 0.5), ("400000", "100000", 4.0), ("x", "1", None)],
)
def test_cgroup_v1_quota(tmp_path: Path, quota: str, period: str, cpus: float | None) -> None:
    assert cgroup_cpu_quota(_v1(tmp_path, quota, period)) == cpus


def test_no_cgroup_files_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None


def test_the_quota_bounds_the_affinity_and_rounds_up(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    assert available_cpus(tmp_path) == affinity  # no quota: every CPU it may run on
    assert available_cpus(_v2(tmp_path, "50000 100000")) == 1  # half a CPU: still one worker
    (tmp_path / "cpu.max").write_text("150000 100000")
    assert available_cpus(tmp_path) == min(affinity, 2)
    (tmp_path / "cpu.max").write_text(f"{(affinity + 8) * 100000} 100000")
    assert available_cpus(tmp_path) == affinity  # a quota above the CPUs it may use


def test_this_machine_answers_sensibly() -> None:
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)
