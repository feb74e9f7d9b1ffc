"""The crash-safe spool: append, seal, release; orphans of dead writers (a real child process,
SIGKILLed while it holds its segment); torn last lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from aigw.gateway.monitoring.spool import Spool, read_lines, spool_directory, spool_from_env

DESTINATION = "http://center:8001/internal/v1/usage"


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_append_seal_release(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "usage", DESTINATION)
    assert spool.seal() is None  # nothing appended: nothing to seal
    spool.append(b'{"a":1}\n')
    spool.append(b'{"a":2}\n')
    sealed = spool.seal()
    assert sealed is not None and sealed.path.read_bytes() == b'{"a":1}\n{"a":2}\n'
    spool.append(b'{"a":3}\n')  # into the next segment
    assert len(files(tmp_path)) == 2
    assert read_lines(sealed) == ([b'{"a":1}', b'{"a":2}'], 0)
    spool.release(sealed)
    assert not sealed.path.exists() and len(files(tmp_path)) == 1
    assert sealed.name.startswith("usage-") and "-" + str(os.getpid()) + "-" in sealed.name
    spool.close()  # the current segment has a record: it stays for a recovery
    assert len(files(tmp_path)) == 1


def test_close_deletes_an_empty_segment(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "requests", DESTINATION)
    spool.append(b"{}\n")
    sealed = spool.seal()
    assert sealed is not None
    spool.release(sealed)
    spool.close()
    assert files(tmp_path) == []


def test_a_live_writers_segments_are_not_orphans(tmp_path: Path) -> None:
    writer = Spool(tmp_path, "usage", DESTINATION)
    writer.append(b"{}\n")
    sealed = writer.seal()
    writer.append(b"{}\n")
    other = Spool(tmp_path, "usage", DESTINATION)  # a sibling worker of the same host
    assert list(other.orphans()) == []
    assert sealed is not None
    writer.release(sealed)
    writer.close()  # gone (its lock with it): what it left is an orphan now
    (orphan,) = list(other.orphans())
    assert read_lines(orphan) == ([b"{}"], 0)
    assert list(Spool(tmp_path, "usage", DESTINATION).orphans()) == []  # claimed: one recoverer
    other.release(orphan)
    assert files(tmp_path) == []


def test_orphans_are_per_kind_and_destination(tmp_path: Path) -> None:
    writer = Spool(tmp_path, "usage", DESTINATION)
    writer.append(b"{}\n")
    writer.close()
    assert list(Spool(tmp_path, "requests", DESTINATION).orphans()) == []
    assert list(Spool(tmp_path, "usage", "http://another-center").orphans()) == []
    assert len(list(Spool(tmp_path, "usage", DESTINATION).orphans())) == 1


CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from aigw.gateway.monitoring.spool import Spool

    spool = Spool(Path(sys.argv[1]), "usage", sys.argv[2])
    spool.append(b'{"n":1}\\n')
    sealed = spool.seal()
    spool.append(b'{"n":2}\\n')
    os.write(spool._current.fd, b'{"n":3, "to')  # killed in the middle of a record
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_a_sigkilled_writer_leaves_orphans_with_a_torn_last_line(tmp_path: Path) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), DESTINATION],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        recoverer = Spool(tmp_path, "usage", DESTINATION)
        assert list(recoverer.orphans()) == []  # alive: its locks hold
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        orphans = list(recoverer.orphans())
        assert [read_lines(o) for o in orphans] == [([b'{"n":1}'], 0), ([b'{"n":2}'], 11)]
        for orphan in orphans:
            recoverer.release(orphan)
        assert files(tmp_path) == []
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_the_directory_comes_from_the_environment(tmp_path: Path) -> None:
    assert spool_directory({"AIGW_SPOOL_DIR": "/x/spool"}) == Path("/x/spool")
    assert spool_directory({"AIGW_DATA_DIR": "/data"}) == Path("/data/spool")
    assert spool_directory({}) == Path(".aigw/spool")
    spool = spool_from_env({"AIGW_SPOOL_DIR": str(tmp_path / "new")}, "usage", DESTINATION)
    assert spool is not None and (tmp_path / "new").is_dir()


def test_an_unusable_directory_is_one_warning_and_no_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {"AIGW_SPOOL_DIR": str(blocker / "spool")}
    assert spool_from_env(env, "usage", DESTINATION) is None
    assert spool_from_env(env, "requests", DESTINATION) is None
    warnings = [r for r in caplog.records if "not usable" in r.getMessage()]
    assert len(warnings) == 1


def test_append_costs_microseconds(tmp_path: Path) -> None:
    """The request path's cost (printed; bounded loosely, for slow CI machines)."""
    spool = Spool(tmp_path, "usage", DESTINATION)
    line = b'[[1800000000,"namespace_model","team-a/gpt-4o",1,0,12,5,1234,200]]\n'
    spool.append(line)
    count = 20_000
    started = time.perf_counter()
    for _ in range(count):
        spool.append(line)
    micros = (time.perf_counter() - started) / count * 1e6
    print(f"\nspool append: {micros:.2f} us per {len(line)}-byte line")
    assert micros < 200
    spool.close()
