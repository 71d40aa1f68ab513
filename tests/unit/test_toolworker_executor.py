"""The tool worker's bounded executor: at most `size` calls at once, the rest queued and counted, each
run in its submitter's context; and the loop's rule for which finished work may commit."""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from concurrent.futures import Future

import pytest

from agentlog.errors import ConfigurationError
from agentlog.kafka.eos import Deferred, Slot, ready_prefix
from agentlog.services.toolworker.executor import ToolExecutor, concurrency_from_env
from helpers import wait_for

REQUEST = contextvars.ContextVar("REQUEST", default="none")


def test_runs_at_most_size_calls_and_counts_the_queue() -> None:
    reports: list[tuple[int, int]] = []
    lock = threading.Lock()

    def report(busy: int, queued: int) -> None:
        with lock:
            reports.append((busy, queued))

    release = threading.Event()
    executor = ToolExecutor(2, report)
    futures = [executor.submit(lambda n=n: release.wait(10) and n) for n in range(5)]
    wait_for(lambda: reports and reports[-1] == (2, 3), timeout=10, what="two busy and three queued")
    assert not any(f.done() for f in futures)
    release.set()
    assert [f.result(10) for f in futures] == [0, 1, 2, 3, 4]
    wait_for(lambda: reports[-1] == (0, 0), timeout=10, what="the pool to drain")
    assert max(busy for busy, _ in reports) == 2


def test_a_call_runs_in_the_submitters_context_and_its_error_reaches_the_future() -> None:
    executor = ToolExecutor(1)
    REQUEST.set("turn-7")
    assert executor.submit(REQUEST.get).result(10) == "turn-7"

    def broken() -> None:
        raise RuntimeError("tool bug")

    with pytest.raises(RuntimeError, match="tool bug"):
        executor.submit(broken).result(10)
    assert executor.submit(lambda: "still working").result(10) == "still working"


@pytest.mark.parametrize("raw", ["0", "-1", "eight", ""])
def test_the_concurrency_must_be_a_positive_number(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("AGENTLOG_TOOL_CONCURRENCY", raw)
    with pytest.raises(ConfigurationError, match="AGENTLOG_TOOL_CONCURRENCY"):
        concurrency_from_env()


def test_the_concurrency_defaults_to_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTLOG_TOOL_CONCURRENCY", raising=False)
    assert concurrency_from_env() == 8
    monkeypatch.setenv("AGENTLOG_TOOL_CONCURRENCY", "3")
    assert concurrency_from_env() == 3


def deferred(future: Future[list[object]]) -> Deferred:
    return Deferred(message=None, envelope=None, future=future, headers=[])  # type: ignore[arg-type]


def test_offsets_advance_only_past_messages_whose_outputs_are_ready() -> None:
    running: Future[list[object]] = Future()
    finished: Future[list[object]] = Future()
    finished.set_result([])
    slots: deque[tuple[int, Slot]] = deque([(10, []), (11, deferred(finished)), (12, deferred(running)), (13, [])])
    assert [offset for offset, _ in ready_prefix(slots)] == [10, 11]
    assert ready_prefix(slots) == []  # 13 is ready but waits behind 12, still running
    running.set_result([])
    assert [offset for offset, _ in ready_prefix(slots)] == [12, 13]
    assert not slots
