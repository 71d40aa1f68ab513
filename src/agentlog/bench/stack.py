"""The processes under test: broker and services, started for one run (or found, with --attach),
and what they cost: CPU seconds, peak PSS, consumer lag, sampled while the load runs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from agentlog.config import Settings
from agentlog.events.registry import bootstrap_codec
from agentlog.kafka.broker import LocalBroker
from agentlog.kafka.topics import ensure_topics
from agentlog.services.metrics.lag import LagReader, total_by_group
from agentlog.supervisor import spawn_service

log = logging.getLogger(__name__)

SERVICES = ("router", "orchestrator", "tool-worker", "aggregator", "synthesis")


def parse_scale(text: str) -> dict[str, int]:
    """`orchestrator=2,tool-worker=2` -> instances per service (the others run one)."""
    scale: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, count = item.partition("=")
        name = name.strip()
        if name not in SERVICES or not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"bad --scale item {item!r}: expected <service>=<instances >= 1>, "
                             f"service one of {', '.join(SERVICES)}")
        scale[name] = int(count)
    return scale


class BenchStack:
    """Broker (LocalBroker unless KAFKA_BOOTSTRAP_SERVERS is set) and the five services, under a
    topic prefix of this run so runs never see each other's messages. `scale` runs several
    instances of a service in its consumer group (own AGENTLOG_INSTANCE each), keyed
    "<service>#<n>" from the second one on."""

    def __init__(self, env: Mapping[str, str], work_dir: Path, run_id: str, *, attach: bool = False,
                 scale: Mapping[str, int] | None = None) -> None:
        self.env = dict(env)
        self.attach = attach
        self.scale = dict(scale or {})
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._broker: LocalBroker | None = None
        self.broker_pid: int | None = None
        base = Settings.from_env(self.env)
        if not attach:
            if base.bootstrap_servers is None:
                self._start_broker(base)
            # Local state of earlier runs belongs to their topic prefixes: start empty.
            shutil.rmtree(work_dir / "var" / "state", ignore_errors=True)
            self.env.update({
                "AGENTLOG_TOPIC_PREFIX": f"bench-{run_id}.",
                "AGENTLOG_VAR_DIR": str(work_dir / "var"),
                "AGENTLOG_TEST_TOOLS": "1",
                "AGENTLOG_TEST_TOOL_DIR": str(work_dir / "test-tools"),
                "AGENTLOG_LOG_LEVEL": self.env.get("AGENTLOG_LOG_LEVEL", "WARNING"),
            })
        elif base.bootstrap_servers is None:
            self.broker_pid = LocalBroker(base.kafka_dir).status().pid
        self.settings = Settings.from_env(self.env)
        self.log_dir = work_dir / "var" / "log"

    def _start_broker(self, base: Settings) -> None:
        broker = LocalBroker(base.kafka_dir)
        if broker.running_bootstrap() is None:
            self._broker = broker  # ours to stop at the end
        self.env["KAFKA_BOOTSTRAP_SERVERS"] = broker.start()
        self.broker_pid = broker.status().pid

    def start(self) -> None:
        if self.attach:
            return
        ensure_topics(self.settings)
        bootstrap_codec(self.settings, "bench")
        for name in SERVICES:
            for index in range(self.scale.get(name, 1)):
                if index == 0:
                    self.processes[name] = spawn_service(name, self.log_dir / f"{name}.log", self.env)
                else:
                    env = {**self.env, "AGENTLOG_INSTANCE": f"scale{index}"}
                    self.processes[f"{name}#{index}"] = spawn_service(name, self.log_dir / f"{name}.{index}.log", env)
        if any(n > 1 for n in self.scale.values()):
            self.wait_for_groups()

    def wait_for_groups(self, timeout: float = 120.0) -> None:
        """Until every scaled service's group is stable with all its instances in it, so that no
        rebalance (instances still joining) falls into a measured phase."""
        from confluent_kafka import ConsumerGroupState
        from confluent_kafka.admin import AdminClient

        from agentlog.kafka.client import base_config

        admin = AdminClient(base_config(self.settings))
        wanted = {self.settings.group(name): n for name, n in self.scale.items()}
        deadline = time.monotonic() + timeout
        while True:
            self.assert_alive()
            futures = admin.describe_consumer_groups(list(wanted))
            ready = True
            for group, future in futures.items():
                try:
                    description = future.result()
                except Exception:
                    ready = False
                    continue
                ready &= description.state == ConsumerGroupState.STABLE and len(description.members) == wanted[group]
            if ready:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumer groups {wanted} did not become stable within {timeout:.0f} s")
            time.sleep(0.2)  # polling the group state, with a deadline

    def pids(self) -> dict[str, int]:
        """Every process whose cost counts: the services (ours, or found by command line) and the broker."""
        found = {name: p.pid for name, p in self.processes.items()}
        if self.attach:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmd = proc.info["cmdline"] or []
                if "agentlog" in cmd and "service" in cmd and cmd[-1] in SERVICES:
                    key = cmd[-1] if cmd[-1] not in found else f"{cmd[-1]}#{proc.info['pid']}"
                    found[key] = proc.info["pid"]
        if self.broker_pid is not None:
            found["kafka"] = self.broker_pid
        return found

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.log_dir / f"{name.replace('#', '.')}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not self.attach:
            self.delete_run_topics()
        if self._broker is not None:
            self._broker.stop()

    def delete_run_topics(self, timeout: float = 30.0) -> list[str]:
        """Delete this run's topics (its own prefix): nothing reads them after the report, and a broker
        that keeps every run's partitions grows in memory and disk run by run (1,600 partitions, 1.8 GB
        after a day of runs). Best effort: a failure is logged. The run's consumer groups stay until
        their offsets expire (static members leave only at their session timeout, so they cannot be
        deleted right away); they hold a few offsets each."""
        from confluent_kafka.admin import AdminClient

        from agentlog.kafka.client import base_config

        prefix = self.settings.topic("")
        try:
            admin = AdminClient(base_config(self.settings))
            topics = sorted(t for t in admin.list_topics(timeout=timeout).topics if t.startswith(prefix))
            for future in admin.delete_topics(topics, operation_timeout=timeout).values() if topics else ():
                future.result(timeout)
        except Exception as error:  # the run's figures are written already; leftovers only cost disk
            log.warning("could not delete the run's topics (prefix %s): %s", prefix, error)
            return []
        return topics


@dataclass
class Usage:
    """Cost of a phase: CPU seconds and peak PSS (bytes) per process, peak total lag per group."""

    cpu_seconds: dict[str, float] = field(default_factory=dict)
    peak_pss: dict[str, int] = field(default_factory=dict)
    max_lag: dict[str, int] = field(default_factory=dict)


def _cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


class ResourceSampler:
    """CPU before/after a phase; PSS and lag sampled every `interval` seconds in between."""

    def __init__(self, settings: Settings, pids: Mapping[str, int], interval: float = 0.5) -> None:
        self.pids = dict(pids)
        self.pids["bench-client"] = os.getpid()
        self.interval = interval
        self.lag = LagReader(settings)
        self.usage = Usage()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="bench-sampler", daemon=True)
        self._cpu_before: dict[str, float] = {}

    def __enter__(self) -> ResourceSampler:
        self._cpu_before = {name: _cpu(pid) for name, pid in self.pids.items()}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.usage.cpu_seconds = {name: _cpu(pid) - self._cpu_before[name] for name, pid in self.pids.items()}
        self.lag.close()

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            try:
                pss = int(psutil.Process(pid).memory_full_info().pss)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            self.usage.peak_pss[name] = max(self.usage.peak_pss.get(name, 0), pss)
        for group, lag in total_by_group(self.lag.read()).items():
            self.usage.max_lag[group] = max(self.usage.max_lag.get(group, 0), lag)
