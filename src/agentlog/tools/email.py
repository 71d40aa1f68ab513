"""sendEmail: the sample tool that needs a person's approval before it runs.

There is no mail server: "sending" appends the message to a local outbox (SQLite under
`$AGENTLOG_VAR_DIR/outbox/email.sqlite`), one row per idempotency key, so a retried or re-run
call never sends twice and tests can count the effects. Swap `_deliver` for SMTP to make it real.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from agentlog.config import project_root
from agentlog.tools.registry import ToolContext, ToolOutput, tool


def outbox_path() -> Path:
    var_dir = Path(os.environ.get("AGENTLOG_VAR_DIR", str(project_root() / "var")))
    return var_dir / "outbox" / "email.sqlite"


def _connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS outbox (idempotency_key TEXT PRIMARY KEY, recipient TEXT, "
               "subject TEXT, body TEXT, invocation_id TEXT)")
    return db


def _deliver(context: ToolContext, to: str, subject: str, body: str) -> bool:
    """Put the message in the outbox once per idempotency key; True if this call sent it."""
    with _connect(outbox_path()) as db:
        cursor = db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?)",
                            (context.idempotency_key, to, subject, body, context.invocation_id))
        return cursor.rowcount == 1


def sent_emails(path: Path | None = None) -> list[dict[str, Any]]:
    """Every message in the outbox (one per idempotency key), oldest first."""
    path = path or outbox_path()
    if not path.exists():
        return []
    with _connect(path) as db:
        rows = db.execute("SELECT idempotency_key, recipient, subject, body FROM outbox ORDER BY rowid").fetchall()
    return [{"idempotencyKey": key, "to": to, "subject": subject, "body": body} for key, to, subject, body in rows]


@tool("sendEmail", "Send an email to a recipient (needs the user's approval before it is sent).", approval=True)
def send_email(to: str, subject: str, body: str, context: ToolContext) -> ToolOutput:
    sent = _deliver(context, to, subject, body)
    return ToolOutput(value=to, text=f"Email to {to} {'sent' if sent else 'was already sent'}: {subject}",
                      data={"to": to, "subject": subject, "sent": sent})
