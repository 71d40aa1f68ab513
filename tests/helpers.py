"""Shared test helpers: waiting on conditions with deadlines, running services as OS processes,
reading a conversation back from the log."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from agentlog.config import Settings
from agentlog.conversation import ConversationClient, EventWatcher, follow_turn
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope
from agentlog.kafka.reader import read_range
from agentlog.kafka.topics import CONVERSATION_EVENTS, ensure_topics
from agentlog.supervisor import spawn_service

T = TypeVar("T")
ALL_SERVICES = ("router", "orchestrator", "tool-worker", "aggregator", "synthesis")


def wait_for(condition: Callable[[], T], timeout: float = 30.0, what: str = "condition",
             interval: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Stack:
    """The services of one test, each its own OS process, with kill/restart and a client."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)
        self.settings = Settings.from_env(self.env)
        ensure_topics(self.settings)
        self.codec = Codec()
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = Path(self.env["AGENTLOG_VAR_DIR"]) / "log"
        self.watcher = EventWatcher(self.settings, self.codec)
        self.client = ConversationClient(self.settings, self.codec, source="test")

    def start(self, *names: str, pause_at: Iterable[str] = (), extra_env: Mapping[str, str] | None = None) -> None:
        for name in names or ALL_SERVICES:
            self._spawn(name, name, None, pause_at, extra_env)

    def start_instance(self, service: str, instance: str, *, pause_at: Iterable[str] = (),
                       extra_env: Mapping[str, str] | None = None) -> str:
        """Start one more instance of `service` (same consumer group, own AGENTLOG_INSTANCE: own
        transactional id and local store), keyed "<service>#<instance>" in `processes`."""
        key = f"{service}#{instance}"
        self._spawn(key, service, instance, pause_at, extra_env)
        return key

    def _spawn(self, key: str, service: str, instance: str | None, pause_at: Iterable[str],
               extra_env: Mapping[str, str] | None) -> None:
        env = dict(self.env)
        env.update(extra_env or {})
        if instance is not None:
            env["AGENTLOG_INSTANCE"] = instance
        if pause_at:
            env["AGENTLOG_PAUSE_AT"] = ",".join(pause_at)
        self.processes[key] = spawn_service(service, self._log_path(key), env)

    def _log_path(self, key: str) -> Path:
        return self.log_dir / f"{key.replace('#', '.')}.log"

    def kill(self, name: str) -> None:
        """SIGKILL a service (or an instance key such as "orchestrator#2")."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def terminate(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM: a clean stop (the consumer leaves its group); returns the exit code."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGTERM)
        return process.wait(timeout)

    def restart(self, name: str, **kwargs: Any) -> None:
        self.kill(name)
        service, _, instance = name.partition("#")
        if instance:
            self.start_instance(service, instance, **kwargs)
        else:
            self.start(name, **kwargs)

    def assert_alive(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} died:\n{self.log(name)[-3000:]}"

    def log(self, name: str) -> str:
        path = self._log_path(name)
        return path.read_text(errors="replace") if path.exists() else ""

    def ask(self, text: str, conversation_id: str, *, plan: Mapping[str, Any] | None = None,
            timeout: float = 60.0) -> tuple[Envelope, list[Envelope]]:
        sent = self.client.question(conversation_id, "tester", text, plan=plan)
        return sent, self.follow(sent, timeout)

    def follow(self, sent: Envelope, timeout: float = 60.0) -> list[Envelope]:
        try:
            return list(follow_turn(self.watcher, sent.conversation_id, sent.turn_id, timeout))
        except Exception:
            self.assert_alive()
            raise

    def conversation_log(self, conversation_id: str) -> list[Envelope]:
        """Every event of a conversation in log order, duplicates included (as stored)."""
        events = []
        for message in read_range(self.settings, self.settings.topic(CONVERSATION_EVENTS)):
            envelope = self.codec.decode(message.value())
            if envelope.conversation_id == conversation_id:
                events.append(envelope)
        return events

    def pause_marker(self, name: str) -> Path:
        return Path(self.env["AGENTLOG_PAUSE_DIR"]) / name

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        self.watcher.close()


def tool_counts(env: Mapping[str, str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(every start of recordEffect, effect rows per idempotency key)."""
    directory = Path(env["AGENTLOG_TEST_TOOL_DIR"])
    starts_file = directory / "starts.jsonl"
    starts = [json.loads(line) for line in starts_file.read_text().splitlines()] if starts_file.exists() else []
    effects: dict[str, int] = {}
    if (directory / "effects.sqlite").exists():
        with sqlite3.connect(directory / "effects.sqlite") as db:
            for (key,) in db.execute("SELECT idempotency_key FROM effects"):
                effects[key] = effects.get(key, 0) + 1
    return starts, effects


def group_caught_up(settings: Settings, group: str, topic: str) -> bool:
    """True when `group` has committed past the last message of every partition of `topic`."""
    from confluent_kafka import Consumer, TopicPartition

    from agentlog.kafka.client import consumer_config

    physical = settings.topic(topic)
    ends: dict[int, int] = {}
    for message in read_range(settings, physical):
        partition, offset = message.partition(), message.offset()
        assert partition is not None and offset is not None
        ends[partition] = offset + 1
    consumer = Consumer(consumer_config(settings, group, "test-lag"))
    try:
        committed = consumer.committed([TopicPartition(physical, p) for p in ends], timeout=10)
        return all(tp.offset >= ends[tp.partition] for tp in committed)
    finally:
        consumer.close()


def mixed_question(index: int, label: str, delay_ms: int) -> tuple[str, dict[str, Any] | None]:
    """The load mix of the chaos and rebalance tests: a local-tool question, a two-step parallel one,
    and a two-step plan of the effect-counting test tool (the second step uses the first's result)."""
    kind = index % 3
    if kind == 0:
        return f"What is {index} * 3?", None
    if kind == 1:
        return "What is 2+3 and what is 10*4?", None
    plan = {"steps": [{"id": "a", "tool": "recordEffect", "arguments": {"label": f"{label}{index}", "delayMs": delay_ms},
                       "dependsOn": []},
                      {"id": "b", "tool": "recordEffect", "arguments": {"label": "{{a}}-b"}, "dependsOn": ["a"]}],
            "finalAnswerSynthesisRequired": True}
    return f"effects {index}", plan


def events_by_turn(stack: Stack) -> dict[str, list[Envelope]]:
    """Every event of the test's event store, grouped by turn, in log order."""
    log: dict[str, list[Envelope]] = {}
    for message in read_range(stack.settings, stack.settings.topic(CONVERSATION_EVENTS)):
        event = stack.codec.decode(message.value())
        log.setdefault(event.turn_id, []).append(event)
    return log


def wait_settled(stack: Stack, turns: Iterable[str], timeout: float, interval: float,
                 on_poll: Callable[[], None]) -> dict[str, list[Envelope]]:
    """Wait until every turn has its answer and verifies (late results of timed-out attempts
    included); `on_poll` runs before each look (e.g. a supervisor's restarts). Returns the log."""
    from agentlog.ops.replay import verify

    wanted = list(turns)
    progress: dict[str, Any] = {}

    def settled() -> dict[str, list[Envelope]]:
        on_poll()
        log = events_by_turn(stack)
        missing = [t for t in wanted if not any(e.type == "FinalAnswerSynthesized" for e in log.get(t, []))]
        violations = [v for t in wanted for v in verify(log.get(t, []))]
        progress.update(missing=len(missing), violations=violations[:5])
        return log if not missing and not violations else {}

    try:
        return wait_for(settled, timeout=timeout, interval=interval, what=f"all {len(wanted)} questions to settle")
    except AssertionError:
        raise AssertionError(f"not settled: {progress}") from None


def isolated_env(base: dict[str, str], bootstrap: str, directory: Path) -> dict[str, str]:
    """A test's environment: its own topic prefix and var/ directory (the `agentlog_env` fixture, or a
    module-scoped stack's), so tests never see each other's messages or state."""
    env = dict(base)
    env.update({
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "AGENTLOG_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:10]}.",
        "AGENTLOG_VAR_DIR": str(directory / "var"),
        "AGENTLOG_TEST_TOOLS": "1",
        "AGENTLOG_TEST_TOOL_DIR": str(directory / "test-tools"),
        "AGENTLOG_PAUSE_DIR": str(directory / "pauses"),
        "AGENTLOG_LOG_LEVEL": "INFO",
    })
    env.pop("AGENTLOG_PAUSE_AT", None)
    return env
