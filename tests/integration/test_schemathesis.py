"""schemathesis against the gateway's own OpenAPI document (issue 11, item 4): generated requests, valid
and invalid, to every operation, as an admin, must never get a 5xx. Bounded by max_examples per
operation so that the module takes well under a minute.

The services are not started: a chat then answers 202 after a short wait, which is a valid answer;
what is checked is the gateway's handling of what it is sent. The SSE stream is left out: it stays
open by design, so a generated request to it would never end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from agentlog.web.keys import KeyStore
from gateway_server import GatewayServer, isolated_env
from helpers import Stack

MAX_EXAMPLES = 12


@pytest.fixture(scope="module")
def gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = isolated_env(dict(os.environ), kafka_bootstrap, tmp_path_factory.mktemp("schemathesis"))
    with Stack(env) as stack, GatewayServer(stack.settings, chat_timeout=0.5) as server:  # Stack creates the topics
        yield server


@pytest.fixture(scope="module")
def admin_key(gateway: GatewayServer) -> str:
    return KeyStore.of(gateway.settings).create("schemathesis", admin=True)[1]


@pytest.fixture(scope="module")
def api_schema(gateway: GatewayServer) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json").exclude(path_regex=r"/stream$")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, gateway: GatewayServer,
                                                  admin_key: str) -> None:
    response = case.call(base_url=gateway.url, headers={"authorization": f"Bearer {admin_key}"}, timeout=30)
    case.validate_response(response, checks=[not_a_server_error])
