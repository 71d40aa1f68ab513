"""Which tool invocations a tool worker takes: all tools, or a dedicated pool of some.

Every ToolInvocationRequested goes to the one `tool-invocation-requests` topic, and each consumer
group sees all of it. A worker hosting a subset of the tools (AGENTLOG_TOOLS, `agentlog service
tool-worker --tools a,b`) therefore runs in its own group, `tool-worker.<a>_<b>`, and skips requests
for tools it does not host: no result, offset committed. The all-tools worker (group `tool-worker`)
likewise skips the tools that have a dedicated pool, listed in AGENTLOG_TOOL_POOLS, which every
tool worker reads. So each request is run by exactly one group:

    AGENTLOG_TOOL_POOLS=getProductInformation            (set for every tool worker)
    agentlog service tool-worker                          all tools but getProductInformation
    agentlog service tool-worker --tools getProductInformation   only getProductInformation

A pool may only host tools listed in AGENTLOG_TOOL_POOLS (checked at start-up): otherwise the
all-tools worker would run them too. A pooled tool with no pool worker running is run by nobody, and
its steps time out; several instances of one pool share its group and split the partitions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from agentlog.errors import ConfigurationError

SERVICE = "tool-worker"


def _names(raw: str) -> frozenset[str]:
    return frozenset(name.strip() for name in raw.split(",") if name.strip())


@dataclass(frozen=True)
class ToolSelection:
    hosted: frozenset[str] = frozenset()  # empty: the all-tools worker
    pooled: frozenset[str] = frozenset()  # tools served by dedicated pools

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ToolSelection:
        env = os.environ if env is None else env
        selection = cls(_names(env.get("AGENTLOG_TOOLS", "")), _names(env.get("AGENTLOG_TOOL_POOLS", "")))
        strays = selection.hosted - selection.pooled
        if strays:
            raise ConfigurationError(
                f"AGENTLOG_TOOLS names {', '.join(sorted(strays))}, which AGENTLOG_TOOL_POOLS does not list: the "
                "all-tools worker would run those tools as well; add them to AGENTLOG_TOOL_POOLS for every tool worker")
        return selection

    @property
    def dedicated(self) -> bool:
        return bool(self.hosted)

    @property
    def service_name(self) -> str:
        """The loop's name: its consumer group, transactional id and state directory derive from it."""
        return f"{SERVICE}.{'_'.join(sorted(self.hosted))}" if self.dedicated else SERVICE

    def takes(self, tool: str) -> bool:
        return tool in self.hosted if self.dedicated else tool not in self.pooled
