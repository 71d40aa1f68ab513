"""The reviews API on SQLite and on a throwaway PostgreSQL 15, and summaries through the real agent."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.orm import Session

from agentlog.config import Settings
from agentlog.reviews.db import open_database
from agentlog.reviews.models import Product, Review
from agentlog.reviews.summary import AgentSummarizer, OfflineSummarizer, ReviewText, SummaryResult
from agentlog.web.reviews import reviews_router
from helpers import Stack

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PIPELINE = ("router", "orchestrator", "tool-worker", "aggregator", "synthesis")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL 15 cluster of its own under /tmp (initdb + pg_ctl, as `postgres` when we are root)."""
    if not (PG_BIN / "initdb").exists() or not (PG_BIN / "pg_ctl").exists():
        pytest.skip(f"PostgreSQL 15 server binaries not found in {PG_BIN} (apt-get install -y postgresql)")
    as_postgres: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    base = Path(tempfile.mkdtemp(prefix="agentlog-pg-", dir="/tmp"))
    base.chmod(0o755)  # every parent of the data dir must be traversable by postgres
    if as_postgres:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    subprocess.run([*as_postgres, str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                    "--locale=C.UTF-8", "--no-sync"], check=True, capture_output=True)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {base} -c fsync=off -c synchronous_commit=off"
    subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "server.log"), "-w",
                    "-t", "30", "-o", options, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_postgres, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                       check=False, capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database per test on either backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'reviews.sqlite'}"
    server: str = request.getfixturevalue("postgres_server")
    name = f"reviews_{uuid.uuid4().hex[:12]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{server}/{name}"


class CountingSummarizer:
    """The offline summarizer, counting how often a summary is actually produced."""

    def __init__(self) -> None:
        self.calls = 0

    def summarize(self, product_id: int, product_name: str, reviews: Sequence[ReviewText]) -> SummaryResult:
        self.calls += 1
        return OfflineSummarizer().summarize(product_id, product_name, reviews)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path / "var", bootstrap_servers=None, external_cluster=False)


@pytest.fixture
def summarizer() -> CountingSummarizer:
    return CountingSummarizer()


@pytest.fixture
def client(database: str, tmp_path: Path, summarizer: CountingSummarizer) -> TestClient:
    app = FastAPI()
    app.include_router(reviews_router(settings_for(tmp_path), database=database, summarizer=summarizer))
    return TestClient(app)


def product_id(client: TestClient, name: str) -> int:
    return next(int(p["id"]) for p in client.get("/api/products").json() if p["name"] == name)


def test_the_sample_catalogue_lists_four_products_with_their_ratings(client: TestClient) -> None:
    products = client.get("/api/products").json()
    assert [p["name"] for p in products] == ["PrintForge Mini", "BrewMaster 360", "EvoPhone X", "VoltRider E2"]
    assert all(p["reviewCount"] == 6 and 1 <= p["averageRating"] <= 5 for p in products)
    assert products[0]["price"] == 349.0


def test_a_products_reviews_come_with_the_average_and_no_summary_yet(client: TestClient) -> None:
    body = client.get(f"/api/products/{product_id(client, 'EvoPhone X')}/reviews").json()
    assert body["product"]["name"] == "EvoPhone X" and len(body["reviews"]) == 6
    assert body["averageRating"] == round(sum(r["rating"] for r in body["reviews"]) / 6, 2)
    assert body["summary"] is None
    assert any("הסוללה" in r["content"] for r in body["reviews"]), "Hebrew survives the round trip"


@pytest.mark.parametrize("path, status", [("/api/products/999/reviews", 404), ("/api/products/abc/reviews", 422),
                                          ("/api/products/0/reviews", 422), ("/api/products/-3/reviews", 422)])
def test_unknown_and_malformed_product_ids_are_refused(client: TestClient, path: str, status: int) -> None:
    assert client.get(path).status_code == status
    assert client.post(f"{path}/summarize").status_code == status


def test_a_new_review_is_stored_and_bad_ones_are_refused(client: TestClient) -> None:
    pid = product_id(client, "VoltRider E2")
    created = client.post(f"/api/products/{pid}/reviews",
                          json={"author": "  Lior ", "rating": 5, "content": "מהיר ונוח, ממליץ!"})
    assert created.status_code == 201
    assert created.json()["author"] == "Lior" and created.json()["productId"] == pid
    reviews = client.get(f"/api/products/{pid}/reviews").json()["reviews"]
    assert len(reviews) == 7 and reviews[0]["id"] == created.json()["id"], "newest first"
    for bad in ({"author": "x", "rating": 6, "content": "too good"}, {"author": "x", "rating": 0, "content": "no"},
                {"author": "x", "rating": 3, "content": "   "}, {"author": "x", "rating": 3},
                {"author": "x", "rating": 3, "content": "ok", "extra": 1},
                {"author": "x", "rating": "five", "content": "a"}):
        assert client.post(f"/api/products/{pid}/reviews", json=bad).status_code == 422, bad
    assert client.post("/api/products/999/reviews", json={"author": "x", "rating": 3, "content": "a"}).status_code == 404


def test_a_summary_is_cached_until_the_reviews_change(client: TestClient, summarizer: CountingSummarizer) -> None:
    pid = product_id(client, "BrewMaster 360")
    first = client.post(f"/api/products/{pid}/reviews/summarize").json()
    assert first["cached"] is False and first["source"] == "offline" and summarizer.calls == 1
    assert first["summary"].startswith("6 review(s) of BrewMaster 360 analysed")
    second = client.post(f"/api/products/{pid}/reviews/summarize").json()
    assert second == {**first, "cached": True} and summarizer.calls == 1
    assert client.get(f"/api/products/{pid}/reviews").json()["summary"]["summary"] == first["summary"]
    client.post(f"/api/products/{pid}/reviews", json={"author": "New", "rating": 1, "content": "Broke on day one."})
    assert client.get(f"/api/products/{pid}/reviews").json()["summary"] is None, "stale summaries are not shown"
    third = client.post(f"/api/products/{pid}/reviews/summarize").json()
    assert third["cached"] is False and summarizer.calls == 2
    assert third["summary"].startswith("7 review(s)") and third["generatedAt"] >= first["generatedAt"]


def test_the_sample_data_is_inserted_once(database: str) -> None:
    open_database(database).dispose()
    engine = open_database(database)
    with Session(engine) as session:
        assert session.scalar(select(func.count(Product.id))) == 4
        assert session.scalar(select(func.count(Review.id))) == 24
    engine.dispose()


@pytest.fixture
def stack(agentlog_env: dict[str, str]) -> Iterator[Stack]:
    with Stack(agentlog_env) as stack:
        yield stack


def test_the_summary_is_produced_through_the_agent_one_analysis_per_review(stack: Stack, tmp_path: Path) -> None:
    stack.start(*PIPELINE)
    summarizer = AgentSummarizer(stack.settings, stack.codec, timeout=60)
    app = FastAPI()
    app.include_router(reviews_router(stack.settings, database=f"sqlite:///{tmp_path / 'r.sqlite'}",
                                      summarizer=summarizer))
    client = TestClient(app)
    pid = product_id(client, "PrintForge Mini")
    body = client.post(f"/api/products/{pid}/reviews/summarize").json()
    assert body["source"] == "agent" and body["cached"] is False
    assert body["summary"].startswith("6 review(s) of PrintForge Mini analysed")
    turn = [e for e in stack.conversation_log(f"reviews-product-{pid}") if e.turn_id == body["turnId"]]
    analysed = {e.payload["stepId"] for e in turn if e.type == "ToolInvocationResulted"
                and e.payload["tool"] == "analyzeReview" and e.payload["status"] == "succeeded"}
    assert analysed == {f"r{i}" for i in range(1, 7)}
    assert [e.type for e in turn][-1] == "FinalAnswerSynthesized"
    assert client.post(f"/api/products/{pid}/reviews/summarize").json() == {**body, "cached": True}
    summarizer.close()


def test_without_an_answer_before_the_deadline_the_offline_summarizer_answers(stack: Stack) -> None:
    # Topics exist but no service runs: the question is accepted by Kafka and never answered.
    summarizer = AgentSummarizer(stack.settings, stack.codec, timeout=1.0)
    result = summarizer.summarize(1, "EvoPhone X", [ReviewText(1, 5, "Great screen, terrible battery.")])
    assert result.source == "offline" and result.turn_id is None
    assert result.content.startswith("1 review(s) of EvoPhone X analysed")
    summarizer.close()
