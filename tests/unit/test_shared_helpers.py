"""Helpers several modules share: env numbers and the var dir (config), record decoding (codec),
insert-once effects (tools), and the redaction forms computed once per log handler."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from agentlog.config import Settings, positive_number, var_dir_from_env
from agentlog.errors import ConfigurationError, InvalidMessageError
from agentlog.events.codec import Codec
from agentlog.observability import RedactingFormatter, redact, secret_forms
from agentlog.tools.effects import insert_once
from agentlog.tools.http_client import timeout_s
from agentlog.tools.registry import ToolError

SCHEMA = "CREATE TABLE IF NOT EXISTS effects (idempotency_key TEXT PRIMARY KEY, note TEXT)"
INSERT = "INSERT OR IGNORE INTO effects VALUES (?, ?)"


def test_a_positive_number_comes_from_the_environment_or_the_default() -> None:
    assert positive_number({"X_S": "2.5"}, "X_S", 9.0) == 2.5
    assert positive_number({"X_S": ""}, "X_S", 9.0) == 9.0
    assert positive_number({}, "X_S", 9.0) == 9.0


@pytest.mark.parametrize(("raw", "why"), [("soon", "must be a number"), ("0", "must be positive"),
                                          ("-3", "must be positive")])
def test_anything_else_is_refused_with_the_variables_name(raw: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=f"X_S {why}, not '{raw}'"):
        positive_number({"X_S": raw}, "X_S", 9.0)


def test_a_tool_reports_a_bad_http_setting_as_not_configured() -> None:
    assert timeout_s({"AGENTLOG_TOOL_HTTP_TIMEOUT_S": "3"}) == 3.0
    with pytest.raises(ToolError, match="AGENTLOG_TOOL_HTTP_TIMEOUT_S") as refused:
        timeout_s({"AGENTLOG_TOOL_HTTP_TIMEOUT_S": "0"})
    assert refused.value.error_type == "NotConfigured" and not refused.value.retryable


def test_the_var_dir_is_the_one_settings_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert var_dir_from_env({"AGENTLOG_VAR_DIR": str(tmp_path / "v")}) == tmp_path / "v"
    monkeypatch.setenv("AGENTLOG_HOME", str(tmp_path))
    assert var_dir_from_env({}) == tmp_path / "var" == Settings.from_env({}).var_dir


def test_an_effect_is_inserted_once_per_key(tmp_path: Path) -> None:
    path = tmp_path / "new" / "effects.sqlite"  # the directory is made on first use
    assert insert_once(path, SCHEMA, INSERT, ("k1", "first"))
    assert not insert_once(path, SCHEMA, INSERT, ("k1", "again"))
    assert insert_once(path, SCHEMA, INSERT, ("k2", "other"))


def test_a_record_is_decoded_only_when_it_matches_its_schema() -> None:
    codec = Codec()
    record = {"conversationId": "c", "turnId": "t", "userId": "", "seq": 3, "text": "hi", "done": True}
    assert codec.decode_record("record.AnswerDelta", codec.encode_record("record.AnswerDelta", record)) == record
    for raw in (None, b"{", b"[1]", orjson.dumps({**record, "seq": "3"})):
        with pytest.raises(InvalidMessageError):
            codec.decode_record("record.AnswerDelta", raw)


def test_the_formatter_redacts_the_same_forms_as_redact() -> None:
    hidden = 'pa"ss\\word'
    forms = secret_forms([hidden, "pa"])
    assert forms[0] == orjson.dumps(hidden).decode()[1:-1] and hidden in forms and forms[-1] == "pa"
    formatter = RedactingFormatter(logging.Formatter("%(message)s"), [hidden])
    record = logging.LogRecord("t", logging.INFO, __file__, 1, "key %s in %s", (hidden, orjson.dumps(hidden).decode()), None)
    line = formatter.format(record)
    assert hidden not in line and line == redact(record.getMessage(), [hidden]) and line.count("[REDACTED]") == 2
