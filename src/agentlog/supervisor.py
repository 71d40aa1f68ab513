"""`agentlog up`: one OS process per service (and per extra command, e.g. the web gateway),
restarted when it dies, logs under var/log."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.config import Settings
from agentlog.kafka.secure import service_env

log = logging.getLogger(__name__)

RESTART_BACKOFF_MAX = 10.0


def service_command(name: str) -> list[str]:
    return [sys.executable, "-m", "agentlog", "service", name]


def spawn_service(name: str, log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start one service as its own process."""
    return spawn_command(service_command(name), log_path, env)


def spawn_command(argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a process in its own session, so a terminal's Ctrl-C reaches only the supervisor."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ if env is None else env), start_new_session=True)


@dataclass
class Supervised:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the supervisor's environment at each start
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)


class Supervisor:
    """Runs `services` by name, plus `commands` (name -> argv) for processes that are not services
    of the transactional loop, such as the web gateway.

    `scale` runs several instances of a service in its consumer group: instance 0 is the one a
    single-instance run has, the others get AGENTLOG_INSTANCE 1, 2, ... (own transactional id,
    static group member id and local store, stable across restarts) and log to <name>.<i>.log.
    """

    def __init__(self, settings: Settings, services: Sequence[str],
                 commands: Mapping[str, Sequence[str]] | None = None, scale: Mapping[str, int] | None = None) -> None:
        self.settings = settings
        self.children = [Supervised(name if i == 0 else f"{name}.{i}", service_command(name),
                                    {} if i == 0 else {"AGENTLOG_INSTANCE": str(i)})
                         for name in services for i in range((scale or {}).get(name, 1))]
        self.children += [Supervised(name, list(argv)) for name, argv in (commands or {}).items()]
        self.stopping = threading.Event()

    def log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"

    def run(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: self.stopping.set())
        try:
            while not self.stopping.is_set():
                self._tick()
                self.stopping.wait(0.5)
        finally:
            self.stop_all()

    def _tick(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                continue
            if child.process is not None:
                code = child.process.returncode
                uptime = now - child.started_at
                child.restarts += 1
                delay = 0.5 if uptime > 30 else min(RESTART_BACKOFF_MAX, 0.5 * 2 ** min(child.restarts, 5))
                log.warning("%s exited with %s after %.1f s; restarting in %.1f s (see %s)", child.name, code,
                            uptime, delay, self.log_path(child.name))
                child.process = None
                child.next_start = now + delay
            if now >= child.next_start:
                env = service_env(self.settings, child.name.partition(".")[0], {**os.environ, **child.env})
                child.process = spawn_command(child.command, self.log_path(child.name), env)
                child.started_at = now
                log.info("started %s (pid %s)", child.name, child.process.pid)

    def stop_all(self, timeout: float = 15.0) -> None:
        running = [c.process for c in self.children if c.process is not None and c.process.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + timeout
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
