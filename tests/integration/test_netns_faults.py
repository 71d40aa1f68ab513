"""Hosts and partitions: the three-broker cluster on one network namespace ("kafka"), the orchestrator
and tool workers on another ("workers"), router, aggregator and synthesis on a third ("front"); the
test itself sends load from the root namespace. Under load the workers' link gets slow (tc netem,
or a tbf rate limit where the kernel lacks netem, as this CI VM's does), then is cut for
AGENTLOG_NETNS_CUT_SECONDS (20 s) and healed; afterwards every question has exactly one answer, no
effect ran twice, nothing acknowledged was lost, and the time to recover is printed.
Long form: `AGENTLOG_NETNS_ROUNDS=5 pytest -s tests/integration/test_netns_faults.py`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from agentlog.kafka.cluster import LocalCluster
from fault_load import FaultReport, Load
from netns import NetLab, NetnsStack, netns_unavailable

UNAVAILABLE = netns_unavailable()
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(900),
              pytest.mark.skipif(shutil.which("java") is None, reason="needs Java 17"),
              pytest.mark.skipif(UNAVAILABLE is not None, reason=f"needs network namespaces: {UNAVAILABLE}")]

REPO = Path(__file__).resolve().parents[2]
CUT_SECONDS = float(os.environ.get("AGENTLOG_NETNS_CUT_SECONDS", "20"))
ROUNDS = int(os.environ.get("AGENTLOG_NETNS_ROUNDS", "1"))
PLACEMENT = {"orchestrator": "workers", "tool-worker": "workers",
             "router": "front", "aggregator": "front", "synthesis": "front"}


def test_workers_host_slowed_then_cut_for_20_s(agentlog_env: dict[str, str], tmp_path: Path) -> None:
    report = FaultReport()
    with NetLab(["kafka", "workers", "front"]) as lab:
        cluster = LocalCluster(tmp_path / "kafka", lib_dir=REPO / "var" / "kafka" / "lib")
        try:
            bootstrap = cluster.start(3, host=lab.address("kafka"), launcher=lab.launcher("kafka"), timeout=180)
            assert all(address.startswith(lab.address("kafka")) for address in bootstrap.split(","))
            kafka_port = int(bootstrap.split(",")[0].rsplit(":", 1)[1])
            env = {**agentlog_env, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "AGENTLOG_TXN_WATCHDOG_S": "15"}
            with NetnsStack(env, lab, PLACEMENT) as stack, Load(stack, "ns", rate=2.0) as load:
                stack.start()
                report.add("none (first answer)", load.probe(time.monotonic()))
                for _ in range(ROUNDS):
                    shaped = lab.degrade("workers", delay_ms=100, loss_percent=2)
                    report.add(f"workers link shaped ({shaped})", load.probe(time.monotonic()))
                    lab.degrade("workers")

                    healing = lab.cut_for("workers", CUT_SECONDS)
                    assert not lab.reachable("workers", lab.address("kafka"), kafka_port), "the link is cut"
                    assert lab.reachable("front", lab.address("kafka"), kafka_port), "only the workers' link"
                    healing.join(CUT_SECONDS + 10)  # the timer heals the link: wait for that, bounded
                    healed_at = time.monotonic()
                    assert lab.reachable("workers", lab.address("kafka"), kafka_port), "the link is back"
                    report.add(f"workers link cut {CUT_SECONDS:.0f} s (time after the heal)", load.probe(healed_at))
                summary = load.verify()
        finally:
            cluster.stop()
    print("\nnetwork faults:\n" + "\n".join(report.lines()) + f"\n  {summary}")
    assert summary["questions"] >= 10
