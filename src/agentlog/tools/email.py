"""sendEmail: the sample tool that needs a person's approval before it runs.

There is no mail server: "sending" appends the message to a local outbox (SQLite under
`$AGENTLOG_VAR_DIR/outbox/email.sqlite`), one row per idempotency key, so a retried or re-run
call never sends twice and tests can count the effects. Swap `_deliver` for SMTP to make it real.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

from agentlog.config import var_dir_from_env
from agentlog.tools.effects import connect, insert_once
from agentlog.tools.registry import ToolContext, ToolOutput, tool

_SCHEMA = ("CREATE TABLE IF NOT EXISTS outbox (idempotency_key TEXT PRIMARY KEY, recipient TEXT, "
           "subject TEXT, body TEXT, invocation_id TEXT)")


def outbox_path() -> Path:
    return var_dir_from_env() / "outbox" / "email.sqlite"


def _deliver(context: ToolContext, to: str, subject: str, body: str) -> bool:
    """Put the message in the outbox once per idempotency key; True if this call sent it."""
    return insert_once(outbox_path(), _SCHEMA, "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)",
                       (context.idempotency_key, to, subject, body, context.invocation_id))


def sent_emails(path: Path | None = None) -> list[dict[str, Any]]:
    """Every message in the outbox (one per idempotency key), oldest first."""
    path = path or outbox_path()
    if not path.exists():
        return []
    with closing(connect(path, _SCHEMA)) as db:
        rows = db.execute("SELECT idempotency_key, recipient, subject, body FROM outbox ORDER BY rowid").fetchall()
    return [{"idempotencyKey": key, "to": to, "subject": subject, "body": body} for key, to, subject, body in rows]


@tool("sendEmail", "Send an email to a recipient (needs the user's approval before it is sent).", approval=True)
def send_email(to: str, subject: str, body: str, context: ToolContext) -> ToolOutput:
    sent = _deliver(context, to, subject, body)
    return ToolOutput(value=to, text=f"Email to {to} {'sent' if sent else 'was already sent'}: {subject}",
                      data={"to": to, "subject": subject, "sent": sent})
