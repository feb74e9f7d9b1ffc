"""A real Prometheus server (Debian's ``prometheus`` binary) for the tests, and PromQL helpers.

The binary is installed by ``scripts/ensure-test-tools.sh`` (``make test`` runs it): a missing
binary fails the tests that need it, with that hint, rather than skipping them.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.helpers import Process, free_port

HINT = "run scripts/ensure-test-tools.sh (make test does) to install Debian's prometheus package"


def binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; fails (never skips) when it is missing."""
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None
    )
    assert found is not None, f"{name} is not installed: {HINT}"
    return found


class Prometheus:
    def __init__(self, url: str, process: Process) -> None:
        self.url = url
        self.process = process

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query at the current time; the result vector (fails on an API error)."""
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", (promql, body)
        return body["data"]["result"]

    def vector(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        """An instant vector as ``{(label values...): value}``."""
        return {
            tuple(sample["metric"].get(label, "") for label in labels): float(sample["value"][1])
            for sample in self.query(promql)
        }

    def wait_for_scrape_after(self, job: str, moment: float, timeout: float = 30) -> float:
        """Wait until every target of ``job`` has been scraped successfully by a scrape that
        started after ``moment`` (Unix time); returns the oldest of those scrapes' times."""
        deadline = time.monotonic() + timeout
        while True:
            # timestamp() of a plain selector is the scrape's start (of an expression, it
            # would be the query's time).
            samples = self.query(f'timestamp(up{{job="{job}"}})')
            times = [float(sample["value"][1]) for sample in samples]
            if times and min(times) > moment:
                up = self.vector(f'up{{job="{job}"}}', "instance")
                assert up and all(value == 1 for value in up.values()), (job, up)
                return min(times)
            if time.monotonic() > deadline:
                targets = httpx.get(f"{self.url}/api/v1/targets", timeout=10).json()
                raise AssertionError(
                    f"no successful scrape of {job} after {moment} within {timeout}s: "
                    f"{samples}\n{targets}\n{self.process.output()[-3000:]}"
                )
            time.sleep(0.2)


@contextmanager
def prometheus(
    tmp: Path,
    scrape_configs: list[dict[str, Any]],
    rule_files: Sequence[str] = (),
    interval: str = "1s",
) -> Iterator[Prometheus]:
    """``prometheus`` on a free loopback port, storage in ``tmp``, scraping every ``interval``."""
    port = free_port()
    config = tmp / f"prometheus-{port}.yml"
    document = {
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": list(rule_files),
        "scrape_configs": scrape_configs,
    }
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    args = [
        binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / f'prometheus-data-{port}'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--storage.tsdb.retention.time=1h",
    ]
    process = Process(args, tmp / f"prometheus-{port}.log")
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(process, f"{url}/-/ready")
        yield Prometheus(url, process)
    finally:
        process.stop()


def _wait_ready(process: Process, url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(
                f"prometheus exited ({process.popen.returncode}):\n{process.output()}"
            )
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"prometheus not ready within {timeout}s:\n{process.output()}")
