"""FastStream KafkaBroker wiring: one factory, consumer settings from Settings, typed
publishing with CloudEvents headers, and message parsing into typed envelopes.

Every Tansu-specific tuning (group-join timing, fetch wait, offset reset, request size)
is a setting with a local default; on Apache Kafka other values are right.
"""

from __future__ import annotations

import json
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from prometheus_client import CollectorRegistry

from shared.contracts.events import Event, Topic, topic_of
from shared.envelope import Envelope, RawRecord, build_headers, decode, encode, normalise_headers
from shared.settings import Settings
from shared.telemetry import current_traceparent
from shared.shredding import SessionKeys, is_sealed_topic, open_payload, sealed_session
from shared.topology import check_produces


def create_broker(
    settings: Settings, service: str, registry: CollectorRegistry | None = None, metrics: Any = None
) -> KafkaBroker:
    """``metrics`` (a shared.telemetry.ServiceMetrics) adds FastStream's message metrics on its
    registry and the project's publish/DLQ counters."""
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError(
            "TB_KAFKA_BOOTSTRAP_SERVERS is not set: start the stack with `make run` (which starts a local broker)"
        )
    middlewares: list[Any] = []
    if metrics is not None:
        from shared.instrumentation import PublishMetricsMiddleware

        registry = metrics.registry
        middlewares.append(PublishMetricsMiddleware(metrics))
    if registry is not None:
        from faststream.kafka.prometheus import KafkaPrometheusMiddleware

        middlewares.append(KafkaPrometheusMiddleware(registry=registry, app_name=service))
    try:
        from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware

        middlewares.append(KafkaTelemetryMiddleware())
    except ImportError:  # pragma: no cover - otel extra missing
        pass
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"{settings.kafka_client_id_prefix}-{service}",
        max_request_size=settings.kafka_max_request_size,
        # Tansu rejects aiokafka's idempotent producer; the outbox plus idempotent
        # consumers give the delivery guarantees instead.
        enable_idempotence=False,
        middlewares=middlewares,
        logger=None,
    )


def consumer_options(settings: Settings, group_id: str | None) -> dict[str, Any]:
    """Keyword arguments for ``broker.subscriber``: one subscriber (one group join) per service."""
    return dict(
        group_id=group_id,
        auto_offset_reset=settings.kafka_auto_offset_reset,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        # Commit after the handler returns: at-least-once. Handlers never raise for a
        # bad event (it goes to the DLQ), so a commit never skips unhandled work.
        ack_policy=AckPolicy.ACK,
    )


async def send(broker: KafkaBroker, topic: str, value: bytes, key: bytes, headers: dict[str, str]) -> None:
    """Publish one CloudEvents record. The OpenTelemetry context is taken from the record's
    own ``traceparent``, so FastStream's telemetry middleware continues the session's
    trace instead of starting a new one; a JSON value is handed over decoded so the
    record's ``content-type`` is application/json (FastStream sets it from the body)."""
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract({"traceparent": headers["traceparent"]})) if headers.get("traceparent") else None
    try:
        try:
            message: object = json.loads(value)
        except ValueError:
            message = value
        await broker.publish(message, topic, key=key, headers=headers)
    finally:
        if token is not None:
            context.detach(token)


async def publish_event(
    broker: KafkaBroker,
    event: Event,
    source: str,
    traceparent: str | None = None,
    event_id: str | None = None,
) -> str:
    """Publish directly (no outbox): for ephemeral messages such as progress ticks. A
    service (``source``) may only publish topics its declaration produces. Topics that carry
    patient data go through the outbox, which seals them: they cannot be published here."""
    check_produces(source, topic_of(event))
    if is_sealed_topic(topic_of(event).value):
        raise ValueError(f"{topic_of(event).value} carries patient data: enqueue it in the outbox (which seals it)")
    headers = build_headers(event, source, traceparent=current_traceparent(traceparent), event_id=event_id)
    await send(broker, topic_of(event).value, encode(event), str(event.session_id).encode(), headers)
    return headers["ce_id"]


def raw_record(msg: KafkaMessage) -> RawRecord:
    raw = msg.raw_message
    return RawRecord(topic=raw.topic, partition=raw.partition, offset=raw.offset, key=raw.key, value=msg.body,
                     headers=normalise_headers(raw.headers))


class Shredded(Exception):
    """A sealed record of a session whose key is gone: drop it, as for a deleted session."""


async def open_message(msg: KafkaMessage, keys: SessionKeys | None) -> Envelope:
    """``parse_message`` after opening a sealed payload with the session's data key (the one
    place events are decrypted). Raises Shredded when the session has no key (deleted: fail
    closed) and ValueError/ValidationError on a bad record. An unsealed value is parsed as is:
    producers seal (shared.outbox), and events in flight from before sealing still flow."""
    record = raw_record(msg)
    session_id = sealed_session(record.value) if is_sealed_topic(record.topic) else None
    if session_id is None:
        return parse_message(msg, record)
    key = await keys.get(session_id) if keys is not None else None
    if key is None:
        raise Shredded(session_id)
    return parse_message(msg, record, open_payload(key, record.topic, record.value))


def parse_message(msg: KafkaMessage, record: RawRecord | None = None, value: bytes | None = None) -> Envelope:
    """Turn a raw record into a typed envelope (``value``: its opened payload, when sealed).
    Raises ValueError/ValidationError on a bad record."""
    record = record or raw_record(msg)
    headers = record.headers
    event = decode(record.topic, value if value is not None else record.value)
    return Envelope(
        topic=record.topic,
        event=event,
        event_id=headers.get("ce_id") or f"{record.topic}:{record.partition}:{record.offset}",
        source=headers.get("ce_source", "unknown"),
        traceparent=headers.get("traceparent"),
        headers=headers,
        record=record,
    )


async def publish_dlq(broker: KafkaBroker, record: RawRecord, error_kind: str, error_message: str, service: str) -> None:
    """The one dead-letter writer: copy the original record (value, key and every header,
    CloudEvents ce_* and traceparent included) to <topic>.dlq with the cause in headers.
    FastStream's telemetry middleware gives the copy its own span id in ``traceparent``
    (same trace), so the original value is also kept as ``dlq_original_traceparent``."""
    headers = {
        **record.headers,
        "dlq_error_kind": error_kind,
        "dlq_error_message": error_message[:500],
        "dlq_service": service,
        "dlq_original_topic": record.topic,
        "dlq_original_partition": str(record.partition),
        "dlq_original_offset": str(record.offset),
    }
    if "traceparent" in record.headers:
        headers["dlq_original_traceparent"] = record.headers["traceparent"]
    # The value as received, byte for byte (``send`` would re-serialise JSON).
    await broker.publish(record.value, f"{record.topic}.dlq", key=record.key, headers=headers)


__all__ = ["create_broker", "consumer_options", "publish_event", "open_message", "parse_message", "Shredded", "publish_dlq", "raw_record", "Topic"]
