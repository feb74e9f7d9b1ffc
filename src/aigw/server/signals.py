"""A hook on granian's stop signal, for what a worker must do before it stops."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def on_stop_signal(callback: Callable[[], None]) -> None:
    """Call ``callback`` in this worker when granian is told to stop (SIGINT/SIGTERM), before
    granian itself stops accepting and waits for in-flight requests.

    granian has no public hook for its stop signal: its worker installs the SIGINT/SIGTERM
    handlers with ``granian._signals.set_loop_signals`` (called after the app factory, in the same
    process), so that function is wrapped to install handlers that call ``callback`` first and
    then set granian's stop signal, as its own handlers do. Should a granian release change
    that, nothing breaks but the callback: stopping is then granian's own.
    """
    import signal

    try:
        from granian import _signals
    except ImportError:  # pragma: no cover
        return
    original = getattr(_signals, "set_loop_signals", None)
    if original is None or getattr(original, "_aigw_wrapped", False):
        return

    def set_loop_signals(loop: Any) -> Any:
        stop_signal = original(loop)

        def handler() -> None:
            try:
                callback()
            finally:
                stop_signal.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(signum, handler)
            except (NotImplementedError, RuntimeError, ValueError):  # e.g. Windows: keep granian's
                pass
        return stop_signal

    set_loop_signals._aigw_wrapped = True  # type: ignore[attr-defined]
    _signals.set_loop_signals = set_loop_signals
