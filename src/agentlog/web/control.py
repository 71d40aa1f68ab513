"""Approve, deny or cancel a running turn from the page or an API client.

The gateway only sends the UserControl command (its envelope's turnId is the target turn); the
orchestrator decides whether it applies, and what happened arrives on the conversation's stream as
ApprovalDecided or TurnCancelled, then the turn's FinalAnswerSynthesized. A command for a turn that
is not waiting is accepted here and ignored there, so a late click is harmless.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field

from agentlog.web.auth import ID_PATTERN, Commanding, ConversationId, Owner, same_user

router = APIRouter(prefix="/api")
TurnId = Annotated[str, Path(pattern=ID_PATTERN, description="the turn to act on (its turnId)")]


class ControlRequest(BaseModel):
    command: Literal["approve", "deny", "cancel"]
    reason: str | None = Field(None, min_length=1, max_length=1000, description="recorded with the decision")
    stepId: str | None = Field(None, min_length=1, max_length=128,
                               description="approve/deny: the waiting step decided (needed when several wait)")
    userId: str | None = Field(None, min_length=1, max_length=128,
                               description="deprecated: the user comes from the session or the API key")


class ControlAccepted(BaseModel):
    conversationId: str
    turnId: str
    command: str


@router.post("/conversations/{conversation_id}/turns/{turn_id}/control", status_code=202,
             response_model=ControlAccepted)
async def control(request: Request, conversation_id: ConversationId, turn_id: TurnId, body: ControlRequest,
                  _: Owner, identity: Commanding) -> ControlAccepted:
    """Send approve / deny / cancel for one turn of your conversation (202: sent, not yet applied)."""
    same_user(body.userId, identity)
    client = request.app.state.gateway.client
    await asyncio.to_thread(client.control, conversation_id, identity.user_id, body.command, turn_id=turn_id,
                            reason=body.reason, step_id=body.stepId)
    return ControlAccepted(conversationId=conversation_id, turnId=turn_id, command=body.command)
