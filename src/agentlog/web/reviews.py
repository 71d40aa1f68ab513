"""The reviews API: products, their reviews with the average rating and summary, adding a review,
and asking for a summary (produced through the agent, cached until the reviews change).

`reviews_router(settings)` returns an APIRouter that carries its own database engine and summarizer;
the gateway mounts it with `app.include_router(reviews_router(settings))`. The endpoints are plain
`def` functions: SQLAlchemy and the Kafka clients block, and FastAPI runs such endpoints in its
thread pool, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from agentlog.config import Settings
from agentlog.reviews.db import database_url, open_database
from agentlog.reviews.models import Product, Review, as_utc
from agentlog.reviews.summary import AgentSummarizer, ReviewSummaries, Summarizer, configured_summarizer

ProductId = Annotated[int, PathParam(ge=1, le=2**31 - 1, description="the product's id")]


class NewReview(BaseModel):
    model_config = ConfigDict(extra="forbid")

    author: str = Field(min_length=1, max_length=255)
    rating: int = Field(ge=1, le=5)
    content: str = Field(min_length=1, max_length=2000)

    @field_validator("author", "content")
    @classmethod
    def not_blank(cls, value: str) -> str:
        stripped = value.strip()
        if not stripped:
            raise ValueError("must not be blank")
        return stripped


def _timestamp(moment: datetime) -> str:
    return as_utc(moment).isoformat().replace("+00:00", "Z")


def _product_json(product: Product, count: int, average: float | None) -> dict[str, Any]:
    return {"id": product.id, "name": product.name, "description": product.description, "price": product.price,
            "reviewCount": count, "averageRating": None if average is None else round(float(average), 2)}


def _review_json(review: Review) -> dict[str, Any]:
    return {"id": review.id, "productId": review.product_id, "author": review.author, "rating": review.rating,
            "content": review.content, "createdAt": _timestamp(review.created_at)}


def _product_or_404(session: Session, product_id: int) -> Product:
    product = session.get(Product, product_id)
    if product is None:
        raise HTTPException(404, f"no product with id {product_id}")
    return product


def reviews_router(settings: Settings, *, database: str | None = None,
                   summarizer: Summarizer | None = None) -> APIRouter:
    """The API over the database at `database` (default DATABASE_URL, else var/reviews.sqlite), with
    summaries from `summarizer` (default: the agent, AGENTLOG_REVIEW_SUMMARY_TIMEOUT_S deadline)."""
    engine: Engine = open_database(database or database_url(settings))
    agent: AgentSummarizer | None = None
    if summarizer is None:
        summarizer = agent = configured_summarizer(settings)
    summaries = ReviewSummaries(engine, summarizer)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # the summarizer this router made owns a producer: flush it and let it go
            if agent is not None:
                await asyncio.to_thread(agent.close)
            engine.dispose()

    router = APIRouter(prefix="/api/products", tags=["reviews"], lifespan=lifespan)

    @router.get("")
    def list_products() -> list[dict[str, Any]]:
        with Session(engine) as session:
            rows = session.execute(
                select(Product, func.count(Review.id), func.avg(Review.rating))
                .outerjoin(Review).group_by(Product.id).order_by(Product.id)).all()
            return [_product_json(product, count, average) for product, count, average in rows]

    @router.get("/{product_id}/reviews")
    def product_reviews(product_id: ProductId) -> dict[str, Any]:
        with Session(engine) as session:
            product = _product_or_404(session, product_id)
            reviews = session.scalars(select(Review).where(Review.product_id == product_id)
                                      .order_by(Review.created_at.desc(), Review.id.desc())).all()
            average = sum(r.rating for r in reviews) / len(reviews) if reviews else None
            summary = summaries.current(session, product_id)
            return {"product": _product_json(product, len(reviews), average),
                    "reviews": [_review_json(r) for r in reviews],
                    "averageRating": None if average is None else round(average, 2),
                    "summary": None if summary is None else summary.to_json()}

    @router.post("/{product_id}/reviews", status_code=201)
    def add_review(product_id: ProductId, body: NewReview) -> dict[str, Any]:
        with Session(engine) as session:
            _product_or_404(session, product_id)
            review = Review(product_id=product_id, author=body.author, rating=body.rating, content=body.content)
            session.add(review)
            session.commit()
            return _review_json(review)

    @router.post("/{product_id}/reviews/summarize")
    def summarize(product_id: ProductId) -> dict[str, Any]:
        found = summaries.summarize(product_id)
        if found is None:
            raise HTTPException(404, f"no product with id {product_id}")
        summary, cached = found
        return {**summary.to_json(), "cached": cached}

    return router
