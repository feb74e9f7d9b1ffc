"""Fixtures shared across test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_servers import redis_cluster


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private 3-master Redis Cluster for the whole run (tests keep apart by key prefix)."""
    with redis_cluster(tmp_path_factory.mktemp("cluster")) as url:
        yield url
