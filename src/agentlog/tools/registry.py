"""The tool registry: a tool is one typed function registered with @tool.

Its parameter JSON Schema is derived from the type hints, so planners, validation and the
catalogue all read one source. A tool returns a ToolOutput or raises ToolError; any other exception
is reported as a non-retryable failure of the tool.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_origin

from agentlog.errors import AgentlogError
from agentlog.observability import redact, secret_values


@dataclass(frozen=True)
class ToolOutput:
    """What a tool produced: `value` is what later steps receive by reference, `text` what people read."""

    value: Any
    text: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "text": self.text, "data": dict(self.data)}


class ToolError(AgentlogError):
    """A tool failed in a way it understands; `retryable` tells the orchestrator whether to try again."""

    def __init__(self, message: str, *, retryable: bool = False, error_type: str = "ToolError") -> None:
        message = redact(message, secret_values())  # it is recorded in the log: never with a key in it
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.error_type = error_type

    def to_json(self) -> dict[str, Any]:
        return {"type": self.error_type, "message": self.message, "retryable": self.retryable}


@dataclass(frozen=True)
class ToolContext:
    """Who is calling: the idempotency key is the same for every attempt of one plan step."""

    invocation_id: str
    idempotency_key: str
    conversation_id: str
    turn_id: str
    step_id: str
    attempt: int
    # Epoch seconds after which the orchestrator stops waiting (it times the attempt out): a tool
    # that can stop early (a network timeout, a loop) should. None when the caller sets no deadline.
    deadline: float | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: Mapping[str, Any]
    function: Callable[..., ToolOutput]
    wants_context: bool
    # A local tool is pure, deterministic and fast: the orchestrator may run it inside its own
    # transaction (recorded as the same events), saving two Kafka hops, like Temporal's local activities.
    local: bool = False
    # JSON argument name -> Python parameter name, for arguments named by a Python keyword ("from").
    renamed: Mapping[str, str] = field(default_factory=dict)
    # An approval tool has an effect a person must allow first: the orchestrator asks (ApprovalRequested)
    # and waits up to `approval_timeout_s` (None: AGENTLOG_APPROVAL_TIMEOUT_S, default 10 min).
    approval: bool = False
    approval_timeout_s: float | None = None

    def catalogue_entry(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}

    def call(self, arguments: Mapping[str, Any], context: ToolContext) -> ToolOutput:
        keywords = {self.renamed.get(name, name): value for name, value in arguments.items()}
        if self.wants_context:
            return self.function(**keywords, context=context)
        return self.function(**keywords)


_SIMPLE_TYPES: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    dict: {"type": "object"},
    list: {"type": "array"},
    Any: {},
}


def _schema_for(annotation: Any) -> dict[str, Any]:
    if annotation in _SIMPLE_TYPES:
        return dict(_SIMPLE_TYPES[annotation])
    origin = get_origin(annotation)
    if origin is Literal:
        return {"enum": list(get_args(annotation))}
    if origin in (typing.Union, types.UnionType):
        options = [_schema_for(a) for a in get_args(annotation)]
        return {"anyOf": options}
    if origin in (list, tuple):
        (item,) = get_args(annotation)[:1] or (Any,)
        return {"type": "array", "items": _schema_for(item)}
    if origin is dict:
        return {"type": "object"}
    if annotation is type(None):
        return {"type": "null"}
    raise TypeError(f"unsupported parameter type for a tool: {annotation!r}")


def parameters_schema(function: Callable[..., Any], renamed: Mapping[str, str] | None = None) -> dict[str, Any]:
    """JSON Schema of a tool function's keyword parameters, from its type hints; `renamed` maps a JSON
    argument name to the Python parameter that receives it."""
    json_names = {python: name for name, python in (renamed or {}).items()}
    hints = typing.get_type_hints(function)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(function).parameters.items():
        if name == "context":
            continue
        if name not in hints:
            raise TypeError(f"tool parameter {name!r} of {function.__name__} needs a type hint")
        schema = _schema_for(hints[name])
        if schema.get("type") == "string":
            schema["minLength"] = 1
        json_name = json_names.get(name, name)
        if parameter.default is inspect.Parameter.empty:
            required.append(json_name)
        else:
            schema["default"] = parameter.default
        properties[json_name] = schema
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, ToolSpec] = {}

    def register(self, spec: ToolSpec) -> None:
        if spec.name in self._tools and self._tools[spec.name].function is not spec.function:
            raise ValueError(f"two tools are named {spec.name!r}")
        self._tools[spec.name] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self._tools.get(name)

    def names(self) -> list[str]:
        return sorted(self._tools)

    def catalogue(self) -> list[dict[str, Any]]:
        return [self._tools[n].catalogue_entry() for n in self.names()]


DEFAULT_REGISTRY = ToolRegistry()


def tool(
    name: str, description: str, registry: ToolRegistry = DEFAULT_REGISTRY, *, local: bool = False,
    renamed: Mapping[str, str] | None = None, approval: bool = False, approval_timeout_s: float | None = None,
) -> Callable[[Callable[..., ToolOutput]], Callable[..., ToolOutput]]:
    """Register a function as a tool under `name` (the name planners and plans use).

    `local=True` declares it pure, deterministic and fast (no I/O, no side effects), which lets the
    orchestrator run it in-process; replaying the log then reaches the same result.
    `renamed` gives arguments whose JSON name is a Python keyword, e.g. {"from": "from_"}.
    `approval=True` makes every call wait for a person's approve/deny, at most `approval_timeout_s`.
    """

    def decorate(function: Callable[..., ToolOutput]) -> Callable[..., ToolOutput]:
        wants_context = "context" in inspect.signature(function).parameters
        registry.register(ToolSpec(name=name, description=description,
                                   parameters=parameters_schema(function, renamed),
                                   function=function, wants_context=wants_context, local=local,
                                   renamed=dict(renamed or {}), approval=approval,
                                   approval_timeout_s=approval_timeout_s))
        return function

    return decorate


ENTRY_POINT_GROUP = "agentlog.tools"


def load_entry_point_tools(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """Import the module each installed `agentlog.tools` entry point names; returns the module names.

    This is the tool SDK: a third-party package declares
    `[project.entry-points."agentlog.tools"] mytools = "mypackage.tools"` and decorates its functions
    with @tool; importing the module registers them in DEFAULT_REGISTRY. A module that fails to import
    raises ConfigurationError naming the entry point: a worker silently missing tools would fail every
    plan that uses them much later and far less clearly.
    """
    from importlib import import_module
    from importlib.metadata import entry_points

    from agentlog.errors import ConfigurationError

    loaded: list[str] = []
    for entry in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            import_module(entry.module)
        except Exception as error:
            raise ConfigurationError(f"tool entry point {entry.name!r} ({entry.value}) of group {group!r} "
                                     f"failed to import: {error!r}") from error
        loaded.append(entry.module)
    return loaded
