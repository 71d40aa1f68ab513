"""Drive load through the pipeline: warm up, then closed-loop or open-loop phases, then the hop floor.

Closed loop: `concurrency` clients, each asking its next question as soon as its answer arrives
(measures capacity). Open loop: questions arrive at a fixed rate whatever the answers do, and
latency counts from each question's *scheduled* time, so a backlog shows up as latency instead of
silently slowing the arrivals (no coordinated omission).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from agentlog.bench.clients import Answer, Client, DirectClient, EventCollector, GatewayClient
from agentlog.bench.hop import measure_hop
from agentlog.bench.pending import PendingTurns
from agentlog.bench.scenarios import Scenario
from agentlog.bench.stack import BenchStack, ResourceSampler, Usage
from agentlog.conversation import ConversationClient
from agentlog.events.codec import Codec
from agentlog.events.envelope import Envelope

Advance = Callable[[], None]


@dataclass(frozen=True)
class BenchConfig:
    scenario: Scenario
    count: int = 100
    concurrency: int = 4
    rate: float | None = None  # open loop when set (or when `sweep` is)
    duration: float = 10.0
    sweep: tuple[float, ...] = ()
    warmup: int = 20
    timeout: float = 60.0
    via: str | None = None
    attach: bool = False
    hop_round_trips: int = 300
    scale: Mapping[str, int] = field(default_factory=dict)  # instances per service (default 1)

    @property
    def rates(self) -> tuple[float, ...]:
        return self.sweep or ((self.rate,) if self.rate else ())


@dataclass
class Phase:
    label: str
    offered_rate: float | None
    conversation_prefix: str
    answers: list[Answer] = field(default_factory=list)
    timeouts: int = 0
    wall_seconds: float = 0.0
    usage: Usage = field(default_factory=Usage)

    def events(self, all_events: list[Envelope]) -> list[Envelope]:
        return [e for e in all_events if e.conversation_id.startswith(self.conversation_prefix)]


@dataclass
class BenchResult:
    config: BenchConfig
    run_id: str
    phases: list[Phase]
    events: list[Envelope]
    hop_seconds: list[float]
    processes: dict[str, int]


def _record(phase: Phase, lock: threading.Lock, answer: Answer | None, advance: Advance) -> None:
    with lock:
        if answer is None:
            phase.timeouts += 1
        else:
            phase.answers.append(answer)
    advance()


def closed_loop(client: Client, config: BenchConfig, phase: Phase, count: int, advance: Advance) -> None:
    lock = threading.Lock()
    next_index = iter(range(count))
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            while not failures:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                started = time.perf_counter()
                answer = client.ask(f"{phase.conversation_prefix}{index}", config.scenario.question(index), started,
                                    config.timeout)
                _record(phase, lock, answer, advance)
        except BaseException as failure:  # e.g. a refused command: the run fails, as it would with one thread
            failures.append(failure)

    threads = [threading.Thread(target=worker, name=f"bench-{i}") for i in range(config.concurrency)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    phase.wall_seconds = time.perf_counter() - began


def open_loop(client: Client, config: BenchConfig, phase: Phase, rate: float, advance: Advance) -> None:
    if isinstance(client, DirectClient):
        paced_open_loop(client, config, phase, rate, advance)
        return
    lock = threading.Lock()
    total = max(1, int(rate * config.duration))
    # Enough threads for every turn in flight at a few seconds of latency; beyond that the backlog
    # still counts, from each question's scheduled time.
    with ThreadPoolExecutor(max_workers=min(256, max(8, int(rate * 3)))) as pool:
        began = time.perf_counter()
        futures: list[Future[None]] = []
        for index in range(total):
            due = began + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the arrivals, not waiting for a result

            def ask(index: int = index, due: float = due) -> None:
                answer = client.ask(f"{phase.conversation_prefix}{index}", config.scenario.question(index), due,
                                    config.timeout)
                _record(phase, lock, answer, advance)

            futures.append(pool.submit(ask))
        for future in futures:
            future.result()
    phase.wall_seconds = time.perf_counter() - began


def paced_open_loop(client: DirectClient, config: BenchConfig, phase: Phase, rate: float, advance: Advance) -> None:
    """The open loop without a thread per question: this thread only paces and sends, the collector
    thread records each answer as it is read (latency from the question's scheduled time)."""
    lock = threading.Lock()
    turns = PendingTurns(lambda answer: _record(phase, lock, answer, advance))
    total = max(1, int(rate * config.duration))
    client.collector.on_answer = turns.answered
    try:
        began = time.perf_counter()
        for index in range(total):
            due = began + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing the arrivals, not waiting for a result
            client.submit(f"{phase.conversation_prefix}{index}", config.scenario.question(index), due,
                          config.timeout, turns)
            turns.expire(time.perf_counter())
        client.flush()
        turns.wait()
    finally:
        client.collector.on_answer = None
    phase.wall_seconds = time.perf_counter() - began


def run_bench(config: BenchConfig, env: Mapping[str, str], work_dir: Path,
              progress: Callable[[str, int], Advance] | None = None) -> BenchResult:
    """Run the whole benchmark; `progress(description, total)` returns a callback per finished turn."""
    run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
    tag = f"bench-{run_id}-"
    stack = BenchStack(env, work_dir, run_id, attach=config.attach, scale=config.scale)
    track = progress or (lambda _d, _t: lambda: None)
    collector: EventCollector | None = None
    client: Client | None = None
    try:
        stack.start()
        collector = EventCollector(stack.settings, Codec(), tag)
        client = (GatewayClient(config.via, collector) if config.via
                  else DirectClient(ConversationClient(stack.settings, Codec(), source="bench"), collector))
        # Warm-up: services join their groups, connections open, caches fill; not measured.
        warm = Phase("warm-up", None, f"{tag}warm-")
        warm_config = BenchConfig(config.scenario, concurrency=config.concurrency, timeout=max(config.timeout, 120))
        closed_loop(client, warm_config, warm, config.warmup, track("warm-up", config.warmup))
        stack.assert_alive()
        phases: list[Phase] = []
        plans: list[tuple[str, float | None]] = [(f"open {r:g}/s", r) for r in config.rates]
        plans = plans or [(f"closed n={config.count} c={config.concurrency}", None)]
        for index, (label, rate) in enumerate(plans):
            phase = Phase(label, rate, f"{tag}p{index}-")
            with ResourceSampler(stack.settings, stack.pids()) as sampler:
                if rate is None:
                    closed_loop(client, config, phase, config.count, track(label, config.count))
                else:
                    open_loop(client, config, phase, rate, track(label, max(1, int(rate * config.duration))))
            phase.usage = sampler.usage
            phases.append(phase)
            stack.assert_alive()
        hop = measure_hop(stack.settings, config.hop_round_trips) if config.hop_round_trips else []
        return BenchResult(config, run_id, phases, collector.events(), hop, stack.pids())
    finally:
        if client is not None:
            client.close()
        if collector is not None:
            collector.close()
        stack.stop()
