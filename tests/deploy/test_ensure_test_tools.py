"""scripts/ensure-test-tools.sh, run by `make test`: with the tools present it does nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "scripts" / "ensure-test-tools.sh"


def test_does_nothing_when_prometheus_and_promtool_are_installed() -> None:
    assert shutil.which("prometheus") and shutil.which("promtool"), "run the script first"
    result = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout == result.stderr == ""  # no apt-get, not even a word
