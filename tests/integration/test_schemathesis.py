"""schemathesis against the gateway's own OpenAPI document (issue 11, item 4): generated requests, valid
and invalid, to every operation, as an admin, must never get a 5xx. Bounded by max_examples per
operation so that the module takes well under a minute.

The services are not started: a chat then answers 202 after a short wait, which is a valid answer;
what is checked is the gateway's handling of what it is sent. Left out: the event streams (they stay
open by design) and the review summary (it waits 20 s for a turn the absent services never answer).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from agentlog.web.keys import KeyStore
from gateway_server import GatewayServer
from helpers import Stack, isolated_env

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = isolated_env(dict(os.environ), kafka_bootstrap, tmp_path_factory.mktemp("schemathesis"))
    with Stack(env) as stack, GatewayServer(stack.settings, chat_timeout=0.5) as server:  # Stack creates the topics
        yield server


@pytest.fixture(scope="module")
def admin_key(gateway: GatewayServer) -> str:
    return KeyStore.of(gateway.settings).create("schemathesis", admin=True)[1]


def test_no_generated_request_gets_a_server_error(gateway: GatewayServer, admin_key: str) -> None:
    """Valid and invalid requests for every operation; schemathesis's pytest plugin does not load under
    this pytest, so each operation's strategy is driven by hypothesis here."""
    api = schemathesis.openapi.from_url(f"{gateway.url}/openapi.json").exclude(path_regex=r"/summarize$")
    failures: list[str] = []
    operations = [op for op in (result.ok() for result in api.get_all_operations())
                  if "text/event-stream" not in json.dumps(op.definition.raw)]
    assert len(operations) >= 8, [op.label for op in operations]
    for operation in operations:
        cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

        @given(cases)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=gateway.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}")

        call()
    assert failures == []
