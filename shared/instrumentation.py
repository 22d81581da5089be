"""What feeds the metrics of shared.telemetry from shared code, so services need no
metric calls of their own for it: a FastStream middleware that counts every publish
(attributed to the event's own service) and every dead-lettered record, an ASGI
middleware for HTTP RED metrics per route template, and the pollers behind the gauges
(consumer lag per partition; sessions by status and the outbox backlog from PostgreSQL)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from faststream._internal.middlewares import BaseMiddleware
from sqlalchemy import func, select

from shared.logging import get_logger
from shared.telemetry import ServiceMetrics

log = get_logger(__name__)
DLQ_SUFFIX = ".dlq"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class PublishMetricsMiddleware:
    """FastStream broker middleware factory: ``create_broker(..., metrics=...)`` adds it."""

    def __init__(self, metrics: ServiceMetrics) -> None:
        self.metrics = metrics

    def __call__(self, msg: Any, /, *, context: Any) -> "_CountPublishes":
        return _CountPublishes(msg, context=context, metrics=self.metrics)


class _CountPublishes(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, metrics: ServiceMetrics) -> None:
        super().__init__(msg, context=context)
        self._metrics = metrics

    async def publish_scope(self, call_next, cmd) -> Any:
        result = await call_next(cmd)
        destination = getattr(cmd, "destination", "") or ""
        headers = getattr(cmd, "headers", None) or {}
        if destination.endswith(DLQ_SUFFIX):
            self._metrics.dlq.labels(destination[: -len(DLQ_SUFFIX)], headers.get("dlq_error_kind", "unknown")).inc()
        else:
            self._metrics.events_published.labels(headers.get("ce_source", "unknown"), destination).inc()
        return result


class HttpMetricsMiddleware:
    """Pure ASGI middleware (streams pass through untouched): requests by method, route
    template and status, and their duration. Unmatched paths share one label, so a scan
    of random URLs cannot create series."""

    def __init__(self, app: Any, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app raises before responding

        async def send_and_note_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.metrics.http_in_flight.inc()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.http_in_flight.dec()
            method = scope["method"] if scope["method"] in HTTP_METHODS else "other"
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.http_requests.labels(method, route, str(status)).inc()
            self.metrics.http_seconds.labels(method, route).observe(time.perf_counter() - started)


async def partition_lag(consumer: Any, tp: Any) -> int | None:
    """High watermark (from the last fetch; Tansu's end_offsets is wrong) minus the group's
    committed offset, or the consumer's position before the group's first commit."""
    highwater = consumer.highwater(tp)
    if highwater is None:
        return None
    committed = await consumer.committed(tp)
    if committed is None:
        committed = await asyncio.wait_for(consumer.position(tp), timeout=5)
    return max(0, highwater - committed)


async def refresh_consumer_lag(broker: Any, metrics: ServiceMetrics, reported: set[tuple]) -> set[tuple]:
    """Set the lag of every partition this process's consumer groups hold; drop partitions
    a rebalance took away. Returns the label sets now reported."""
    current: set[tuple] = set()
    for subscriber in broker.subscribers:
        consumer, group = getattr(subscriber, "consumer", None), getattr(subscriber, "group_id", None)
        if consumer is None or not group:  # not started, or a group-less reader (the gateway's status feed)
            continue
        for tp in consumer.assignment():
            lag = await partition_lag(consumer, tp)
            if lag is None:
                continue
            labels = (group, tp.topic, str(tp.partition))
            metrics.consumer_lag.labels(*labels).set(lag)
            current.add(labels)
    for labels in reported - current:
        metrics.consumer_lag.remove(*labels)
    return current


async def watch_consumer_lag(broker: Any, metrics: ServiceMetrics, interval_s: float) -> None:
    reported: set[tuple] = set()
    while True:
        try:
            reported = await refresh_consumer_lag(broker, metrics, reported)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a rebalance or broker hiccup: the next round retries
            log.warning("consumer_lag_poll_failed", error=type(exc).__name__)
        await asyncio.sleep(interval_s)


def _set_all(gauge: Any, values: dict[str, float], seen: set[str]) -> None:
    """Set every label's value; labels that disappeared from the query drop to 0."""
    for label in seen | set(values):
        gauge.labels(label).set(values.get(label, 0))
    seen |= set(values)


async def refresh_database_gauges(session_factory: Any, metrics: ServiceMetrics, seen: dict[str, set[str]]) -> None:
    from shared.db.tables import outbox, session_status

    source = outbox.c.headers["ce_source"].astext
    async with session_factory() as db:
        statuses = (await db.execute(
            select(session_status.c.status, func.count()).group_by(session_status.c.status))).all()
        backlog = (await db.execute(
            select(source, func.count(), func.extract("epoch", func.now() - func.min(outbox.c.created_at)))
            .where(outbox.c.published_at.is_(None)).group_by(source))).all()
    _set_all(metrics.sessions_by_status, {status: count for status, count in statuses}, seen["status"])
    _set_all(metrics.outbox_backlog, {src or "unknown": count for src, count, _ in backlog}, seen["source"])
    _set_all(metrics.outbox_oldest_age, {src or "unknown": float(age or 0) for src, _, age in backlog}, seen["source"])


async def watch_database(session_factory: Any, metrics: ServiceMetrics, interval_s: float) -> None:
    """Database-wide gauges: every worker reports the same values (query them with max()),
    so they are there while any one worker runs. One short query pair per interval; no
    connection is held in between."""
    seen: dict[str, set[str]] = {"status": set(), "source": {metrics.service}}
    while True:
        try:
            await refresh_database_gauges(session_factory, metrics, seen)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # database restart: keep the last values, retry next round
            log.warning("database_gauges_poll_failed", error=type(exc).__name__)
        await asyncio.sleep(interval_s)
