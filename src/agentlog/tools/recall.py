"""The recallConversation tool: hands the conversation's earlier turns to the synthesizer.

The router writes the turns into the step's arguments from its memory window (services/router/
memory.py), so the plan records exactly what the tool sees and it needs no model and no I/O: it runs
as a local tool inside the orchestrator's transaction. The final answer is written by the
synthesizer from the same recorded turns, in the question's language.
"""

from __future__ import annotations

from agentlog.services.router.memory import RECALL_TOOL
from agentlog.services.synthesis.compose import PHRASES, recall_text
from agentlog.tools.registry import ToolOutput, tool


@tool(RECALL_TOOL, "The conversation's earlier questions and answers, oldest first, for questions about "
      "earlier turns ('what did I ask you before?'); the router fills `turns` in from the log.", local=True)
def recall_conversation(turns: list[dict[str, str]] | None = None) -> ToolOutput:
    remembered = [{"question": str(t.get("question", "")), "answer": str(t.get("answer", ""))} for t in turns or []]
    return ToolOutput(value=remembered, text=recall_text(remembered, PHRASES["en"]), data={"turns": len(remembered)})
