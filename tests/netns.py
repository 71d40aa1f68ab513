"""Hosts on one machine: network namespaces joined by a bridge, so brokers and services talk over
addresses that exist only inside their namespaces (as across machines), and one host's link can be
cut (ip link down) or degraded (tc netem delay/loss) for a bounded time.

Layout: one namespace per host, each with a veth pair whose outer end is enslaved to a bridge in the
root namespace. The bridge carries the lab's one root-namespace address, for the test itself (the
"operator's machine" that sends load and reads the log). Names carry a random tag, so parallel runs
never collide; everything is deleted on exit, even when the test fails.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from agentlog.supervisor import service_command, spawn_command
from helpers import Stack


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


def netns_unavailable() -> str | None:
    """Why namespaces cannot be made here (for pytest.skip), or None when they can."""
    probe = f"alprobe{uuid.uuid4().hex[:6]}"
    try:
        done = _ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


class NetLab:
    """Hosts (network namespaces) on one /24 behind a bridge; a context manager that cleans up."""

    def __init__(self, hosts: Sequence[str]) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.subnet = f"10.{random.randint(64, 250)}.{random.randint(0, 255)}"
        self.bridge = f"albr{self.tag}"
        self.hosts = {name: index + 1 for index, name in enumerate(hosts)}
        self._timers: list[threading.Timer] = []

    def namespace(self, host: str) -> str:
        return f"al-{self.tag}-{host}"

    def address(self, host: str) -> str:
        return f"{self.subnet}.{self.hosts[host]}"

    def _veth(self, host: str) -> str:
        return f"al{self.tag}v{self.hosts[host]}"  # the outer end, in the root namespace (<= 15 chars)

    def launcher(self, host: str) -> list[str]:
        """The argv prefix that runs a command on `host`."""
        return ["ip", "netns", "exec", self.namespace(host)]

    def __enter__(self) -> NetLab:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for host in self.hosts:
                ns, veth = self.namespace(host), self._veth(host)
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
                _ip("-n", ns, "link", "set", "eth0", "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for timer in self._timers:
            timer.cancel()
        for host in self.hosts:
            ns = self.namespace(host)
            pids = _ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:  # only processes inside our own namespaces: started by this test
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
            _ip("netns", "del", ns, check=False)
        _ip("link", "del", self.bridge, check=False)

    # ---- faults -------------------------------------------------------------------------------
    def cut(self, host: str) -> None:
        """Unplug the host's cable: no packet in or out until `heal`."""
        _ip("link", "set", self._veth(host), "down")

    def heal(self, host: str) -> None:
        _ip("link", "set", self._veth(host), "up")

    def cut_for(self, host: str, seconds: float) -> threading.Timer:
        """Cut the link now and heal it after `seconds` on a timer (also healed on exit, whatever happens)."""
        self.cut(host)
        timer = threading.Timer(seconds, self.heal, (host,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return timer

    def degrade(self, host: str, delay_ms: int = 0, loss_percent: float = 0.0, rate_kbit: int = 256) -> str:
        """Slow or lossy link on the host's outer veth end; `degrade(host)` clears it. Uses tc netem
        (delay, loss); kernels built without netem (this CI VM's) get a tbf rate limit instead, which
        slows every exchange under load. Returns what was applied, for the report."""
        veth = self._veth(host)
        subprocess.run(["tc", "qdisc", "del", "dev", veth, "root"], capture_output=True, check=False)
        if not (delay_ms or loss_percent):
            return "cleared"
        netem = ["netem", "delay", f"{delay_ms}ms", "loss", f"{loss_percent}%"]
        tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", "16kbit", "latency", f"{max(delay_ms, 50)}ms"]
        for qdisc in (netem, tbf):
            done = subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", *qdisc], capture_output=True,
                                  text=True, check=False, timeout=30)
            if done.returncode == 0:
                return " ".join(qdisc)
        raise RuntimeError(f"tc could not shape {veth}: {done.stderr.strip()}")

    def reachable(self, host: str, address: str, port: int) -> bool:
        """True if a TCP connection from `host` to address:port succeeds within 1 s."""
        probe = f"import socket; socket.create_connection(({address!r}, {port}), 1).close()"
        done = subprocess.run([*self.launcher(host), sys.executable, "-c", probe],
                              capture_output=True, check=False, timeout=30)
        return done.returncode == 0


class NetnsStack(Stack):
    """A Stack whose services run on lab hosts: `placement` maps a service name to its host."""

    def __init__(self, env: Mapping[str, str], lab: NetLab, placement: Mapping[str, str]) -> None:
        self.lab = lab
        self.placement = dict(placement)
        super().__init__(env)

    def _spawn(self, key: str, service: str, instance: str | None, pause_at: Any,
               extra_env: Mapping[str, str] | None) -> None:
        env = {**self.env, **(extra_env or {})}
        if instance is not None:
            env["AGENTLOG_INSTANCE"] = instance
        argv = [*self.lab.launcher(self.placement[service]), *service_command(service)]
        self.processes[key] = spawn_command(argv, self._log_path(key), env)

