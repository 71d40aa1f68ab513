"""Review summaries, produced through the agent and cached until the reviews change.

The agent path sends one question whose client-provided plan holds one analyzeReview step per review
(all independent, so they run in parallel) and waits for the turn's final answer; the summary is then
composed from the steps' recorded results, so it can be traced to its turn in the log. When the
pipeline does not answer before the deadline (or cannot be reached, or a step fails), the same
composition runs on the offline lexicon analysis in this process, and the summary says so
(`source` "offline" instead of "agent").

A summary is stored with a fingerprint of the reviews it covers (ids, ratings, contents); it is
served from the database until the fingerprint of the product's reviews differs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson
from confluent_kafka import KafkaException
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from agentlog.config import Settings, positive_number
from agentlog.conversation import ConversationClient, EventWatcher, follow_turn
from agentlog.errors import AgentlogError
from agentlog.events.codec import Codec
from agentlog.reviews.models import Product, Review, Summary, as_utc, utc_now
from agentlog.tools.review import lexicon_analysis

log = logging.getLogger(__name__)

REVIEWS_PER_SUMMARY = 12  # the newest ones; a plan holds at most 16 steps
DEFAULT_TIMEOUT_S = 20.0
SOURCE = "reviews"


@dataclass(frozen=True)
class ReviewText:
    id: int
    rating: int
    content: str


@dataclass(frozen=True)
class SummaryResult:
    content: str
    source: str  # "agent" or "offline"
    turn_id: str | None = None


class Summarizer(Protocol):
    def summarize(self, product_id: int, product_name: str, reviews: Sequence[ReviewText]) -> SummaryResult: ...


def fingerprint(reviews: Sequence[ReviewText]) -> str:
    """Changes whenever a review is added, removed or edited."""
    canonical = sorted((r.id, r.rating, r.content) for r in reviews)
    return hashlib.sha256(orjson.dumps(canonical)).hexdigest()


def compose_summary(product_name: str, reviews: Sequence[ReviewText], analyses: Sequence[dict[str, Any]]) -> str:
    """One paragraph from per-review analyses {sentiment, score, aspects}: counts, means, aspects."""
    if not reviews:
        return f"{product_name} has no reviews yet."
    labels = Counter(a["sentiment"] for a in analyses)
    positive, neutral, negative = labels["positive"], labels["neutral"], labels["negative"]
    mean_score = sum(float(a["score"]) for a in analyses) / len(analyses)
    mean_rating = sum(r.rating for r in reviews) / len(reviews)
    overall = ("mostly positive" if positive > negative and positive * 2 >= len(analyses) else
               "mostly negative" if negative > positive and negative * 2 >= len(analyses) else "mixed")
    text = (f"{len(reviews)} review(s) of {product_name} analysed: {positive} positive, {neutral} neutral, "
            f"{negative} negative (mean sentiment {mean_score:+.2f}, mean rating {mean_rating:.1f}/5). "
            f"Overall: {overall}.")
    for label, verb in (("positive", "Praised"), ("negative", "Criticised")):
        aspects = Counter(x["aspect"] for a in analyses for x in a.get("aspects", []) if x.get("sentiment") == label)
        if aspects:
            text += f" {verb}: " + ", ".join(f"{name} ({count})" for name, count in aspects.most_common(4)) + "."
    return text


class OfflineSummarizer:
    """The in-process fallback: the analyzeReview tool's lexicon method, no Kafka, no model."""

    def summarize(self, product_id: int, product_name: str, reviews: Sequence[ReviewText]) -> SummaryResult:
        analyses = [lexicon_analysis(r.content) for r in reviews]
        return SummaryResult(compose_summary(product_name, reviews, analyses), "offline")


def review_plan(reviews: Sequence[ReviewText]) -> dict[str, Any]:
    return {"steps": [{"id": f"r{i}", "tool": "analyzeReview", "arguments": {"review_text": r.content},
                       "dependsOn": []} for i, r in enumerate(reviews, 1)],
            "finalAnswerSynthesisRequired": True}


class AgentSummarizer:
    """Asks the pipeline; falls back to `fallback` past `timeout` seconds or on any pipeline failure.

    The deadline covers the turn; connecting to an unreachable broker is bounded by the Kafka
    clients' own timeouts (about 10 s) before the fallback answers.
    """

    def __init__(self, settings: Settings, codec: Codec | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                 fallback: Summarizer | None = None) -> None:
        self.settings = settings
        self.codec = codec or Codec()
        self.timeout = timeout
        self.fallback = fallback or OfflineSummarizer()
        self._client: ConversationClient | None = None
        self._client_lock = threading.Lock()

    def _conversation_client(self) -> ConversationClient:
        with self._client_lock:
            if self._client is None:
                self._client = ConversationClient(self.settings, self.codec, source=SOURCE)
            return self._client

    def close(self) -> None:
        """Deliver anything pending and let the producer go (the gateway calls this on shutdown)."""
        with self._client_lock:
            if self._client is not None:
                self._client.producer.flush(5)
                self._client = None

    def summarize(self, product_id: int, product_name: str, reviews: Sequence[ReviewText]) -> SummaryResult:
        if not reviews:
            return self.fallback.summarize(product_id, product_name, reviews)
        try:
            analyses, turn_id = self._ask(product_id, product_name, reviews)
        except (AgentlogError, KafkaException) as error:
            log.warning("review summary of product %s falls back to the offline summarizer: %s", product_id, error)
            return self.fallback.summarize(product_id, product_name, reviews)
        return SummaryResult(compose_summary(product_name, reviews, analyses), "agent", turn_id)

    def _ask(self, product_id: int, product_name: str, reviews: Sequence[ReviewText]) -> tuple[list[dict[str, Any]], str]:
        """The analyses the agent recorded for each review, and the turn that holds them."""
        watcher = EventWatcher(self.settings, self.codec)  # at the log's end before the question goes out
        try:
            sent = self._conversation_client().question(
                f"reviews-product-{product_id}", SOURCE, f"Summarize the customer reviews of {product_name}",
                plan=review_plan(reviews))
            events = list(follow_turn(watcher, sent.conversation_id, sent.turn_id, self.timeout))
        finally:
            watcher.close()
        results: dict[str, dict[str, Any]] = {}
        for event in events:
            payload = event.payload
            if event.type == "ToolInvocationResulted" and payload["status"] == "succeeded":
                results.setdefault(payload["stepId"], payload["output"]["value"])
        missing = [f"r{i}" for i in range(1, len(reviews) + 1) if f"r{i}" not in results]
        if missing:
            raise AgentlogError(f"analyzeReview gave no result for steps {', '.join(missing)} of turn {sent.turn_id}")
        return [results[f"r{i}"] for i in range(1, len(reviews) + 1)], sent.turn_id


def configured_summarizer(settings: Settings) -> AgentSummarizer:
    """The agent with AGENTLOG_REVIEW_SUMMARY_TIMEOUT_S (default 20) as its deadline."""
    return AgentSummarizer(settings, timeout=positive_number(os.environ, "AGENTLOG_REVIEW_SUMMARY_TIMEOUT_S",
                                                             DEFAULT_TIMEOUT_S))


@dataclass(frozen=True)
class StoredSummary:
    content: str
    source: str
    generated_at: datetime
    turn_id: str | None

    def to_json(self) -> dict[str, Any]:
        return {"summary": self.content, "source": self.source, "turnId": self.turn_id,
                "generatedAt": self.generated_at.isoformat().replace("+00:00", "Z")}


def _stored(row: Summary) -> StoredSummary:
    return StoredSummary(row.content, row.source, as_utc(row.generated_at), row.turn_id)


def newest_reviews(session: Session, product_id: int) -> list[ReviewText]:
    rows = session.scalars(select(Review).where(Review.product_id == product_id)
                           .order_by(Review.created_at.desc(), Review.id.desc()).limit(REVIEWS_PER_SUMMARY))
    return [ReviewText(r.id, r.rating, r.content) for r in rows]


class ReviewSummaries:
    """The cache: one summary row per product, regenerated when its fingerprint no longer matches."""

    def __init__(self, engine: Engine, summarizer: Summarizer) -> None:
        self.engine = engine
        self.summarizer = summarizer
        self._locks: dict[int, threading.Lock] = {}
        self._locks_lock = threading.Lock()

    @contextmanager
    def _product_lock(self, product_id: int) -> Iterator[None]:
        """Concurrent requests for one product wait for the first one's summary instead of redoing it."""
        with self._locks_lock:
            lock = self._locks.setdefault(product_id, threading.Lock())
        with lock:
            yield

    def current(self, session: Session, product_id: int) -> StoredSummary | None:
        """The stored summary if it still matches the product's reviews, else None."""
        row = session.scalar(select(Summary).where(Summary.product_id == product_id))
        if row is None or row.reviews_fingerprint != fingerprint(newest_reviews(session, product_id)):
            return None
        return _stored(row)

    def summarize(self, product_id: int) -> tuple[StoredSummary, bool] | None:
        """(summary, whether it came from the cache); None for an unknown product."""
        with self._product_lock(product_id):
            with Session(self.engine) as session:
                product = session.get(Product, product_id)
                if product is None:
                    return None
                cached = self.current(session, product_id)
                if cached is not None:
                    return cached, True
                name, reviews = product.name, newest_reviews(session, product_id)
            # No transaction stays open while the agent works; a review added meanwhile changes the
            # fingerprint, so the summary stored below is regenerated on the next request.
            result = self.summarizer.summarize(product_id, name, reviews)
            with Session(self.engine) as session:
                row = session.scalar(select(Summary).where(Summary.product_id == product_id))
                if row is None:
                    row = Summary(product_id=product_id)
                    session.add(row)
                row.content, row.source, row.turn_id = result.content, result.source, result.turn_id
                row.reviews_fingerprint, row.generated_at = fingerprint(reviews), utc_now()
                session.commit()
                return _stored(row), False
