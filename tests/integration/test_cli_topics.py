"""`agentlog topics`: partitions, configs, sizes and each reading group's lag, on the real broker."""

from __future__ import annotations

import subprocess
import sys

from helpers import Stack


def test_topics_shows_configs_sizes_and_lag(agentlog_env: dict[str, str]) -> None:
    stack = Stack(agentlog_env)
    try:
        stack.start()
        stack.ask("What is 3*3?", "conv-topics")
        done = subprocess.run([sys.executable, "-m", "agentlog", "topics"], env={**stack.env, "COLUMNS": "260"},
                              capture_output=True, text=True, timeout=60)
    finally:
        stack.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if line.count("│") > 5}
    events = rows[stack.settings.topic("conversation-events")]
    cells = [cell.strip() for cell in events.split("│")[1:-1]]
    assert cells[1:4] == ["6", "delete", "-1"]
    assert int(cells[4]) >= 7, "the turn's events are counted"
    assert "orchestrator" in cells[6] and "aggregator" in cells[6]
    assert rows[stack.settings.topic("schema-registry")].count("compact") == 1
