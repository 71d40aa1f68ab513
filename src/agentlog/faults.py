"""Test-only pause points that make crash windows deterministic.

With AGENTLOG_PAUSE_AT=name[,name...] a service that reaches `pause_point(name)` writes a marker
file `<AGENTLOG_PAUSE_DIR>/<name>` and blocks until it is killed, so a crash test can SIGKILL it
exactly there. Without the variable a pause point costs one set lookup.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_ARMED = frozenset(filter(None, os.environ.get("AGENTLOG_PAUSE_AT", "").split(",")))


def pause_point(name: str) -> None:
    if name not in _ARMED:
        return
    marker_dir = Path(os.environ.get("AGENTLOG_PAUSE_DIR", "."))
    marker_dir.mkdir(parents=True, exist_ok=True)
    (marker_dir / name).write_text(str(os.getpid()))
    threading.Event().wait()  # until SIGKILL: the test owns this process now
