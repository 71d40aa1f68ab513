"""The `agentlog` command line: thin typer commands over library calls."""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from agentlog.config import Settings
from agentlog.errors import AgentlogError

if TYPE_CHECKING:
    from agentlog.events.envelope import Envelope

app = typer.Typer(help="agentlog: a durable, auditable LLM agent on Apache Kafka.", no_args_is_help=True)
kafka_app = typer.Typer(help="The local single-node Kafka broker (KRaft).", no_args_is_help=True)
dlq_app = typer.Typer(help="The dead-letter queue.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(dlq_app, name="dlq")
topics_app = typer.Typer(help="The topics agentlog uses.")
app.add_typer(topics_app, name="topics")
console = Console()


def _settings() -> Settings:
    return Settings.from_env()


def _setup_logging() -> None:
    logging.basicConfig(level=os.environ.get("AGENTLOG_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s", stream=sys.stderr)


def _broker(settings: Settings) -> object:
    from agentlog.kafka.broker import LocalBroker

    return LocalBroker(settings.kafka_dir)


def _fail(error: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {error}")
    return typer.Exit(1)


def _start_local_kafka(settings: Settings, brokers: int | None) -> str:
    """Start the local cluster if one was created (or `brokers` > 1 asks for one), else the single broker."""
    from agentlog.kafka.broker import LocalBroker
    from agentlog.kafka.cluster import LocalCluster

    cluster, single = LocalCluster(settings.kafka_dir), LocalBroker(settings.kafka_dir)
    if cluster.node_ids() or (brokers or 1) > 1:
        if single.running_bootstrap():
            raise ValueError("the single-node broker is running: `agentlog kafka stop` it first")
        if cluster.node_ids() and brokers not in (None, len(cluster.node_ids())):
            raise ValueError(f"the local cluster has {len(cluster.node_ids())} nodes; "
                             f"`agentlog kafka reset --yes` to start over with {brokers}")
        return cluster.start(brokers or 3)
    return single.start()


@kafka_app.command("start")
def kafka_start(
    brokers: Annotated[int | None, typer.Option(help="nodes of a local KRaft cluster (3: survives one lost node)")] = None,
    secure: Annotated[bool, typer.Option("--secure", help="SASL_SSL, SCRAM users per service and ACLs "
                                                          "(single node; kept on later starts)")] = False,
) -> None:
    """Fetch the Kafka jars (first time) and start the broker (or a cluster of --brokers nodes) under var/kafka."""
    settings = _settings()
    if settings.external_cluster:
        console.print(f"KAFKA_BOOTSTRAP_SERVERS is set ({settings.bootstrap_servers}): using that cluster, "
                      "not starting a local broker")
        return
    try:
        bootstrap = _start_secure_kafka(settings, brokers) if secure else _start_local_kafka(settings, brokers)
    except (AgentlogError, ValueError) as error:
        raise _fail(error) from error
    console.print(f"Kafka is up at {bootstrap} (data under {settings.kafka_dir})")


def _start_secure_kafka(settings: Settings, brokers: int | None) -> str:
    """The single broker with SASL_SSL and ACLs; creates the topics and ACLs of this topic prefix."""
    from agentlog.kafka.broker import LocalBroker
    from agentlog.kafka.secure import provision, secure_dir

    if (brokers or 1) > 1:
        raise ValueError("--secure runs the single-node broker only")
    bootstrap = LocalBroker(settings.kafka_dir).start(secure=True)
    acls = provision(settings)
    console.print(f"SASL_SSL (SCRAM-SHA-512) with {acls} ACLs; CA and per-service credentials in "
                  f"{secure_dir(settings.kafka_dir)}")
    return bootstrap


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the local broker (or every node of the local cluster) cleanly (SIGTERM, then SIGKILL)."""
    from agentlog.kafka.broker import LocalBroker
    from agentlog.kafka.cluster import LocalCluster

    kafka_dir = _settings().kafka_dir
    stopped = LocalCluster(kafka_dir).stop() | LocalBroker(kafka_dir).stop()
    console.print("Kafka stopped" if stopped else "Kafka was not running")


@kafka_app.command("reset")
def kafka_reset(yes: Annotated[bool, typer.Option("--yes", help="really delete the broker's data")] = False) -> None:
    """Stop the local broker and delete its data (every topic, offset and schema): a fresh start."""
    from agentlog.kafka.broker import LocalBroker

    if not yes:
        raise _fail(ValueError("this deletes every event in the local broker; pass --yes to do it"))
    from agentlog.kafka.cluster import LocalCluster

    broker = LocalBroker(_settings().kafka_dir)
    broker.wipe()
    LocalCluster(broker.kafka_dir).wipe()
    console.print(f"Kafka stopped and {broker.data_dir} deleted")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the local broker (or the configured cluster) is up."""
    from agentlog.kafka.broker import LocalBroker

    settings = _settings()
    if settings.external_cluster:
        console.print(f"using the external cluster {settings.bootstrap_servers}")
        return
    from agentlog.kafka.cluster import LocalCluster

    if LocalCluster(settings.kafka_dir).node_ids():
        _cluster_status(settings.kafka_dir)
        return
    status = LocalBroker(settings.kafka_dir).status()
    if status.running:
        console.print(f"Kafka {status.version} is up at {status.bootstrap} (pid {status.pid}, "
                      f"{'reachable' if status.reachable else 'NOT answering'}); data in {status.data_dir}")
    else:
        console.print(f"Kafka is down (data in {status.data_dir})")
        raise typer.Exit(3)


def _cluster_status(kafka_dir: Path) -> None:
    """Each node, the controller quorum's leader and any under-replicated partition."""
    from agentlog.kafka.cluster import LocalCluster

    status = LocalCluster(kafka_dir).status()
    table = Table("node", "address", "pid", "broker", "quorum leader (its view)")
    for node in status.nodes:
        table.add_row(str(node.node_id), node.address, str(node.pid or "down"),
                      "registered" if node.registered else "NOT registered", str(node.quorum_leader or "-"))
    console.print(table)
    console.print(f"Kafka {status.version}, {len(status.nodes)} nodes; controller quorum leader: "
                  f"{status.controller or 'none'}; under-replicated partitions: {len(status.under_replicated)}")
    for lagging in status.under_replicated:
        console.print(f"  {lagging.topic}[{lagging.partition}] replicas {list(lagging.replicas)} "
                      f"in sync {list(lagging.isr)}")
    if not any(node.pid for node in status.nodes):
        raise typer.Exit(3)


@app.command("init")
def init() -> None:
    """Create the topics and publish the schemas (idempotent; `up` does this too)."""
    from agentlog.events.registry import bootstrap_codec
    from agentlog.kafka.topics import ensure_topics

    settings = _settings()
    try:
        created = ensure_topics(settings)
        codec = bootstrap_codec(settings, "cli")
    except AgentlogError as error:
        raise _fail(error) from error
    console.print(f"topics created: {', '.join(created) or 'none (all existed)'}; "
                  f"{len(codec.subjects())} schemas registered")


@topics_app.callback(invoke_without_command=True)
def topics(ctx: typer.Context) -> None:
    """The topics: partitions, the configs agentlog relies on, size, and each reading group's lag."""
    if ctx.invoked_subcommand is not None:
        return
    from collections import Counter

    from confluent_kafka import Consumer

    from agentlog.kafka.client import consumer_config
    from agentlog.kafka.reader import watermarks
    from agentlog.kafka.topics import TOPICS, describe_topics
    from agentlog.services.metrics.lag import LagReader

    settings = _settings()
    described = describe_topics(settings)
    lag_reader = LagReader(settings)
    lags: dict[str, Counter[str]] = {}
    for lag in lag_reader.read():
        lags.setdefault(lag.topic, Counter())[lag.group] += lag.lag
    lag_reader.close()
    consumer = Consumer(consumer_config(settings, None, "agentlog-topics"))
    table = Table("topic", "partitions", "cleanup.policy", "retention.ms", "messages", "on disk", "lag by group",
                  "purpose")
    for spec in TOPICS:
        name = settings.topic(spec.name)
        info = described.get(name)
        if info is None:
            table.add_row(name, "missing", "", "", "", "", "", spec.purpose)
            continue
        config = info["config"]
        assert isinstance(config, dict) and isinstance(info["partitions"], int)
        spans = [watermarks(consumer, name, p) for p in range(info["partitions"])]
        table.add_row(name, str(info["partitions"]), config.get("cleanup.policy", ""), config.get("retention.ms", ""),
                      str(sum(high - low for low, high in spans)), _disk_size(settings, name),
                      ", ".join(f"{group} {lag}" for group, lag in sorted(lags.get(spec.name, Counter()).items())),
                      spec.purpose)
    consumer.close()
    console.print(table)


@topics_app.command("check")
def topics_check() -> None:
    """Report every topic whose settings break the guarantees on this cluster, with the fix (exit 1 if any)."""
    from agentlog.kafka.topics_check import check_cluster

    brokers, problems = check_cluster(_settings())
    for problem in problems:
        console.print(f"[red]{problem.topic}[/red]: {problem.problem}\n  fix: {problem.fix}")
    if problems:
        raise typer.Exit(1)
    console.print(f"all topics keep the guarantees on this {brokers}-broker cluster")


def _disk_size(settings: Settings, topic: str) -> str:
    """Bytes on disk, readable only for the local broker's data directory (n/a for a remote cluster)."""
    if settings.external_cluster:
        return "n/a"
    data = settings.kafka_dir / "data"
    total = sum(f.stat().st_size for d in data.glob(f"{topic}-*") if d.is_dir() for f in d.iterdir() if f.is_file())
    return f"{total / 1024:.0f} KiB"


@app.command("service")
def service(
    name: Annotated[str, typer.Argument(help="router, orchestrator, tool-worker, aggregator, synthesis")],
    tools: Annotated[str, typer.Option(help="tool-worker only: host just these tools (comma-separated), as a "
                                            "dedicated pool; list them in AGENTLOG_TOOL_POOLS for every tool worker")] = "",
) -> None:
    """Run one service in the foreground (what `up` starts once per service)."""
    from agentlog.observability import configure_tracing, setup_logging
    from agentlog.services.runtime import SERVICES, run_service

    if name not in SERVICES:
        raise _fail(ValueError(f"unknown service {name!r}; known: {', '.join(SERVICES)}"))
    if tools:
        if name != "tool-worker":
            raise _fail(ValueError("--tools applies to the tool-worker service only"))
        os.environ["AGENTLOG_TOOLS"] = tools  # read by load_tools and the worker's ToolSelection
    setup_logging(name)
    configure_tracing(name)
    run_service(name, _settings())


@app.command("up")
def up(
    services: Annotated[str, typer.Option(help="comma-separated services to run (default: all)")] = "",
    port: Annotated[int, typer.Option(help="the web gateway's port (0: no gateway)")] = 3000,
    scale: Annotated[str, typer.Option(help="instances per service in one consumer group, "
                                            "e.g. orchestrator=2,tool-worker=3")] = "",
) -> None:
    """Start the broker (unless KAFKA_BOOTSTRAP_SERVERS is set), create topics, run every service."""
    from agentlog.bench.stack import parse_scale
    from agentlog.events.registry import bootstrap_codec
    from agentlog.kafka.topics import ensure_topics
    from agentlog.services.runtime import SERVICES
    from agentlog.supervisor import Supervisor
    from agentlog.web.cli import gateway_command

    _setup_logging()
    settings = _settings()
    names = [s.strip() for s in services.split(",") if s.strip()] or list(SERVICES)
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise _fail(ValueError(f"unknown services {unknown}; known: {', '.join(SERVICES)}"))
    try:
        instances = parse_scale(scale)
        if not settings.external_cluster:
            bootstrap = _start_local_kafka(settings, None)
            console.print(f"Kafka is up at {bootstrap}")
        ensure_topics(settings)
        bootstrap_codec(settings, "supervisor")
    except (AgentlogError, ValueError) as error:
        raise _fail(error) from error
    console.print(f"running {', '.join(names)} and the gateway; logs in {settings.log_dir}.\n"
                  f"Open http://127.0.0.1:{port}/ or ask in another terminal: "
                  ".venv/bin/agentlog ask \"What is 12.5% of 240?\"  (Ctrl-C stops)")
    Supervisor(settings, names, commands={"gateway": gateway_command(port=port)} if port else None,
               scale=instances).run()


@app.command("down")
def down() -> None:
    """Stop the local broker (services started by `up` stop with it on Ctrl-C)."""
    kafka_stop()


@app.command("ask")
def ask(
    question: Annotated[str, typer.Argument(help="the question")],
    conversation: Annotated[str, typer.Option(help="conversation id (default: a new one)")] = "",
    user: Annotated[str, typer.Option(help="user id")] = "cli-user",
    plan: Annotated[Path | None, typer.Option(help="a JSON plan to run instead of the planner's")] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the answer")] = 60.0,
    quiet: Annotated[bool, typer.Option(help="print only the answer")] = False,
) -> None:
    """Send a question, print the turn's events as they arrive, then the final answer."""
    from agentlog.conversation import ConversationClient, EventWatcher, TurnTimeout, follow_turn
    from agentlog.events.codec import Codec
    from agentlog.events.registry import SchemaRegistry

    settings = _settings()
    conversation_id = conversation or f"conv-{uuid.uuid4().hex[:16]}"
    try:
        codec = Codec(SchemaRegistry(settings).read_all() or None)
        watcher = EventWatcher(settings, codec)
        client = ConversationClient(settings, codec)
        plan_json = orjson.loads(plan.read_bytes()) if plan else None
        sent = client.question(conversation_id, user, question, plan=plan_json)
        first_ms = sent.timestamp_ms
        for event in follow_turn(watcher, conversation_id, sent.turn_id, timeout):
            if event.type == "FinalAnswerSynthesized":
                if not quiet:
                    console.print(f"[dim]+{event.timestamp_ms - first_ms:>6} ms[/dim]  [bold]answer[/bold]")
                console.print(event.payload["message"])
            elif not quiet:
                console.print(f"[dim]+{event.timestamp_ms - first_ms:>6} ms[/dim]  {event.type:<26} "
                              f"[dim]{event.source}[/dim] {_summary(event)}")
            if event.type == "ApprovalRequested":  # the turn waits for a person: say how to answer
                console.print(f"[yellow]{event.payload['tool']} needs approval[/yellow]: agentlog approve|deny|cancel "
                              f"{sent.turn_id} --conversation {conversation_id}")
    except TurnTimeout as error:
        raise _fail(error) from error
    except AgentlogError as error:
        raise _fail(error) from error
    if not quiet:
        console.print(f"[dim]conversation {conversation_id}, turn {sent.turn_id}[/dim]")


def _summary(event: Envelope) -> str:
    """The detail column of `ask` and `replay`: who decided what for control events, else the payload's gist."""
    from agentlog.ops.replay import control_summary

    if (control := control_summary(event)) is not None:
        return control
    payload = event.payload
    for key in ("tool", "reason", "userInput"):
        if key in payload:
            extra = f" {payload.get('stepId', '')}#{payload.get('attempt', '')}" if key == "tool" else ""
            return f"{payload[key]}{extra}"[:100]
    if "plan" in payload:
        return f"{len(payload['plan']['steps'])} step(s) by {payload.get('planner')}"
    return ""


@app.command("replay")
def replay(
    conversation_id: Annotated[str, typer.Argument(help="the conversation to replay")],
    at: Annotated[int | None, typer.Option("--at", help="show the orchestrator's state after event N")] = None,
    verify_: Annotated[bool, typer.Option("--verify", help="check the conversation's invariants")] = False,
) -> None:
    """The conversation's history from the log: who did what, when, and how long it took."""
    from agentlog.events.codec import Codec
    from agentlog.ops.replay import conversation_events, memory_lines, state_at, verify

    settings = _settings()
    events = conversation_events(settings, Codec(), conversation_id)
    if not events:
        raise _fail(ValueError(f"conversation {conversation_id!r} has no events in the log"))
    table = Table("#", "time", "+ms", "turn", "type", "service", "detail")
    start = events[0].timestamp_ms
    previous = start
    for index, event in enumerate(events):
        table.add_row(str(index), event.timestamp[11:23], f"{event.timestamp_ms - previous:+d}", event.turn_id[:8],
                      event.type, event.source, _summary(event))
        previous = event.timestamp_ms
    console.print(table)
    if memory := memory_lines(events):
        console.print("[bold]memory given to each turn (earlier turns, oldest first):[/bold]")
        console.print("\n".join(memory), markup=False, highlight=False)
    if at is not None:
        try:
            state = state_at(events, at)
        except ValueError as error:
            raise _fail(error) from error
        console.print(f"[bold]orchestrator state after event {at} ({events[at].type}):[/bold]")
        for turn in state.turns.values():
            console.print(f"turn {turn.turn_id} ({turn.status})")
            for step in turn.steps.values():
                detail = f" value={step.value!r}" if step.status == "succeeded" else ""
                detail += f" error={step.error['message']!r}" if step.error else ""
                console.print(f"  {step.id:<10} {step.tool:<22} {step.status:<9} attempt {step.attempt}{detail}")
    if verify_:
        violations = verify(events)
        for violation in violations:
            console.print(f"[red]violation[/red] turn {violation.turn_id}: {violation.message}")
        if violations:
            raise typer.Exit(1)
        turns = len({e.turn_id for e in events})
        console.print(f"[green]verified[/green]: {len(events)} events, {turns} turns, no violations")


@dlq_app.command("list")
def dlq_list() -> None:
    """Every dead letter: where it came from, why, and the start of its original bytes."""
    from agentlog.kafka.dlq import read_dead_letters

    table = Table("#", "failed at", "service", "source", "type", "reason", "original")
    count = 0
    for letter in read_dead_letters(_settings()):
        r = letter.record
        table.add_row(str(letter.offset), r["failedAt"], r["service"],
                      f"{r['sourceTopic']}[{r['sourcePartition']}]@{r['sourceOffset']}", r["messageType"] or "",
                      r["reason"], letter.original_text(80))
        count += 1
    console.print(table if count else "the dead-letter queue is empty")


@dlq_app.command("show")
def dlq_show(offset: Annotated[int, typer.Argument(help="the dead letter's offset (first column of `dlq list`)")]) -> None:
    """One dead letter in full: why, from where, and its original bytes."""
    from agentlog.ops.redrive import RedriveError, find_dead_letter

    try:
        letter = find_dead_letter(_settings(), offset)
    except RedriveError as error:
        raise _fail(error) from error
    for key in ("reason", "service", "sourceTopic", "sourcePartition", "sourceOffset", "messageType", "failedAt"):
        console.print(f"[bold]{key}[/bold]: {letter.record[key]}")
    value = letter.original_value
    console.print("[bold]original value[/bold]:")
    try:
        console.print_json(data=orjson.loads(value or b""))
    except orjson.JSONDecodeError:
        console.print(repr(value))


@dlq_app.command("redrive")
def dlq_redrive(
    offset: Annotated[int, typer.Argument(help="the dead letter's offset")],
    file: Annotated[Path | None, typer.Option(help="a corrected message to publish instead of the original")] = None,
) -> None:
    """Re-publish a dead letter (original or fixed) to its source topic, recorded as an event."""
    from agentlog.events.codec import Codec
    from agentlog.ops.redrive import RedriveError, redrive

    try:
        event = redrive(_settings(), Codec(), offset, fixed=file.read_bytes() if file else None)
    except RedriveError as error:
        raise _fail(error) from error
    console.print(f"redriven to {event.payload['sourceTopic']} (conversation {event.conversation_id}); "
                  f"recorded as DeadLetterRedriven {event.id}")


def _register_extensions() -> None:
    """Commands that live beside their code (each module has a `register(app)`)."""
    from agentlog.bench.cli import register as register_bench
    from agentlog.cli_eval import eval_app
    from agentlog.llm.cli import register as register_llm
    from agentlog.ops.control_cli import register as register_control
    from agentlog.services.metrics.cli import register as register_metrics
    from agentlog.services.projections.cli import register as register_projections
    from agentlog.tools.eval_cli import register as register_tool_eval
    from agentlog.web.cli import register as register_web

    for register in (register_llm, register_tool_eval, register_metrics, register_bench, register_projections,
                     register_web, register_control):
        register(app)
    app.add_typer(eval_app, name="eval")


_register_extensions()
