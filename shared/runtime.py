"""What every worker service's main.py wires: settings, logging, tracing, metrics, the
broker, the database, the outbox relay, the blob store and a thread pool for blocking
work. Services build one ServiceRuntime in main(), register handlers, and run."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from faststream.kafka import KafkaBroker, KafkaMessage

from shared.blobstore import BlobStore, SealedBlobStore, create_blob_store
from shared.broker import Shredded, consumer_options, create_broker, open_message, publish_dlq, raw_record
from shared.contracts.events import Topic
from shared.db.engine import create_engine, create_session_factory
from shared.envelope import Envelope, RawRecord, trace_id_of
from shared.logging import configure_logging, error_location, get_logger
from shared.inbox import Tombstones
from shared.outbox import OutboxRelay, broker_publisher
from shared.resilience import PermanentError
from shared.settings import Settings, load_settings
from shared.shredding import KeyShredded, SessionKeys
from shared.telemetry import ServiceMetrics, configure_tracing, flush_traces, work_span
from shared.topology import ServiceTopology, TopologyError

log = get_logger(__name__)


@dataclass
class ServiceRuntime:
    name: str
    settings: Settings
    broker: KafkaBroker | None  # None only when created with_broker=False
    metrics: ServiceMetrics
    blobs: BlobStore
    executor: ThreadPoolExecutor
    engine: Any = None
    session_factory: Any = None
    relay: OutboxRelay | None = None
    tombstones: Tombstones | None = None
    keys: SessionKeys | None = None  # opens sealed events (shared/shredding.py)
    retry_base_delay_s: float = 0.5
    broker_enabled: bool = True  # False: never connect (an API served without the bus, in tests)
    _tasks: list[asyncio.Task] = field(default_factory=list)
    _background: list = field(default_factory=list)
    _on_stop: list = field(default_factory=list)
    blocking_in_flight: int = 0  # run_blocking calls still running in a thread (shutdown hands them back)
    _blocking_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings, name: str, with_db: bool = True, with_broker: bool = True) -> "ServiceRuntime":
        configure_logging(settings.log_level, settings.log_format, service=name)
        configure_tracing(settings, name)
        metrics = ServiceMetrics(name)
        broker = create_broker(settings, name, metrics=metrics) if with_broker else None
        runtime = cls(
            name=name,
            settings=settings,
            broker=broker,
            metrics=metrics,
            blobs=create_blob_store(settings),
            executor=ThreadPoolExecutor(max_workers=settings.worker_threads, thread_name_prefix=f"{name}-work"),
            broker_enabled=with_broker,
        )
        if broker is not None:
            # FastStream's own drain: on stop, a subscriber stops fetching and waits this
            # long for the message in hand before cancelling it (uncommitted: redelivered).
            broker.config.broker_config.graceful_timeout = settings.shutdown_grace_s
        if with_db:
            runtime.engine = create_engine(settings)
            runtime.session_factory = create_session_factory(runtime.engine)
            runtime.keys = SessionKeys(runtime.session_factory, ttl_s=settings.key_cache_ttl_s)
            runtime.blobs = SealedBlobStore(runtime.blobs, runtime.keys)  # session blobs sealed with its key
        if with_db and with_broker:  # without a broker the outbox keeps its rows for a later relay
            runtime.relay = OutboxRelay(
                runtime.session_factory, broker_publisher(broker), poll_interval_s=settings.outbox_poll_interval_s,
                keep_sent_s=settings.outbox_keep_sent_s,
            )
            runtime.tombstones = Tombstones(runtime.session_factory, name)
        return runtime

    def subscriber(self, *topics: str, group_id: str | None = None, **overrides: Any):
        group = self.settings.consumer_group or (group_id if group_id is not None else self.name)
        options = consumer_options(self.settings, group)
        options.update(overrides)
        return self.broker.subscriber(*topics, **options)

    def consume(self, service: ServiceTopology, handlers: Mapping[Topic | str, object], **overrides: Any) -> None:
        """One subscriber (one consumer-group join, the declared group) over every topic
        the service's declaration consumes, dispatching each record to its topic's handler.
        Raises TopologyError at start-up when ``handlers`` and the declaration differ."""
        if service.name != self.name:
            raise TopologyError(f"the {self.name} runtime was given the {service.name} declaration")
        routes = service.routes(handlers)
        if service.group is not None:
            subscriber = self.subscriber(*routes, group_id=service.group, **overrides)
        else:  # no group: every replica reads every record and has nothing to commit
            options = {**consumer_options(self.settings, None), **overrides}
            options.pop("ack_policy", None)
            subscriber = self.broker.subscriber(*routes, **options)

        @subscriber
        async def on_message(msg: KafkaMessage) -> None:
            await self.dispatch(msg, routes)

    def route(self, handler, deps):
        """Adapt a plain handler ``(event, delivery, deps)`` to what ``consume`` dispatches to."""

        async def handle(envelope: Envelope) -> None:
            await handler(envelope.event, envelope, deps)

        return handle

    async def run_blocking(self, fn, *args):
        """Run inference/decoding on the worker pool, never on the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._counted, fn, *args)

    def _counted(self, fn, *args):
        """Counted in the thread, not the task: a cancelled await leaves the thread running."""
        with self._blocking_lock:
            self.blocking_in_flight += 1
        try:
            return fn(*args)
        finally:
            with self._blocking_lock:
                self.blocking_in_flight -= 1

    async def dispatch(self, msg: KafkaMessage, routes) -> None:
        """Parse, bind log context, drop events of deleted sessions, run the topic's
        handler with bounded retries; a record that cannot be parsed or keeps failing goes
        to <topic>.dlq once, so nothing is retried forever and nothing blocks its
        partition. ``routes`` maps topic -> handler (or is one handler for every topic)."""
        try:
            envelope = await self._open(msg)
        except Shredded:  # its key is gone: the session was deleted (ids only in the log)
            log.info("event_for_shredded_session_dropped", topic=msg.raw_message.topic)
            return
        except Exception as exc:
            log.warning("event_rejected", topic=msg.raw_message.topic, error=type(exc).__name__)
            await self.dead_letter(raw_record(msg), "permanent", f"invalid event: {type(exc).__name__}")
            return
        handler = routes.get(envelope.topic) if isinstance(routes, dict) else routes
        if handler is None:
            return
        structlog.contextvars.bind_contextvars(
            session_id=str(envelope.event.session_id), trace_id=trace_id_of(envelope.traceparent),
            event_id=envelope.event_id, topic=envelope.topic,
        )
        if envelope.topic == Topic.SESSION_DELETED.value and self.keys is not None:
            self.keys.forget(envelope.event.session_id)
        try:
            if await self._is_buried(envelope):
                log.info("event_for_deleted_session_dropped")
                return
            with work_span(f"{envelope.topic} handle", envelope.event.session_id, envelope.traceparent) as span:
                span.set_attribute("messaging.message.id", envelope.event_id)
                await self._handle_with_retries(handler, envelope)
        finally:
            structlog.contextvars.unbind_contextvars("session_id", "trace_id", "event_id", "topic")

    async def _open(self, msg: KafkaMessage) -> Envelope:
        """open_message, retrying a failed key lookup (a database hiccup must not dead-letter a
        good event); a bad record or a shredded session raises at once."""
        for attempt in range(1, self.settings.dlq_max_attempts + 1):
            try:
                return await open_message(msg, self.keys)
            except (Shredded, KeyShredded, ValueError):
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if attempt == self.settings.dlq_max_attempts:
                    raise
                log.warning("session_key_lookup_error", attempt=attempt, error=type(exc).__name__)
                await asyncio.sleep(min(2 ** attempt, 30) * self.retry_base_delay_s)
        raise AssertionError("unreachable")

    async def _handle_with_retries(self, handler, envelope: Envelope) -> None:
        attempts = self.settings.dlq_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                await handler(envelope)
                return
            except PermanentError as exc:
                log.warning("event_failed_permanently", code=exc.code)
                await self.dead_letter(envelope.record, "permanent", exc.message)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event_handler_error", attempt=attempt, error=type(exc).__name__, where=error_location(exc))
                if attempt == attempts:
                    await self.dead_letter(envelope.record, "transient", f"{type(exc).__name__} after {attempts} attempts")
                    return
                await asyncio.sleep(min(2 ** attempt, 30) * self.retry_base_delay_s)

    async def _is_buried(self, envelope: Envelope) -> bool:
        """A late event of a session this consumer forgot (session.deleted itself passes:
        forgetting twice is harmless)."""
        if self.tombstones is None or envelope.topic == Topic.SESSION_DELETED.value:
            return False
        return await self.tombstones.is_buried(envelope.event.session_id)

    async def dead_letter(self, record: RawRecord | None, error_kind: str, error_message: str) -> None:
        """Every DLQ path of every service: one copy of the original record."""
        if record is None:  # an envelope built by hand (tests): nothing to copy
            log.warning("dead_letter_without_record", error_kind=error_kind)
            return
        await publish_dlq(self.broker, record, error_kind, error_message, self.name)  # counted by the publish middleware

    def every(self, name: str, interval_s: float, tick) -> None:
        """Run ``await tick()`` every ``interval_s`` once the service has started; an error
        is logged (type only) and the next tick runs anyway."""

        async def loop() -> None:
            while True:
                try:
                    await tick()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("periodic_task_error", task=name, error=type(exc).__name__, where=error_location(exc))
                await asyncio.sleep(interval_s)

        self.background(name, loop)

    async def start(self) -> None:
        self.metrics.serve(self.settings.metrics_port)
        if self.keys is not None:  # blob calls from worker threads look keys up on this loop
            self.keys.bind_loop(asyncio.get_running_loop())
        if self.relay:
            self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-outbox"))
        if self.broker_enabled:
            await self.broker.start()
            self._start_metric_pollers()
        for name, factory in self._background:
            self.spawn(factory(), name)
        log.info("service_started")

    def _start_metric_pollers(self) -> None:
        """Zero series for every consumed topic's DLQ, then the pollers behind the gauges:
        consumer lag of this process's partitions, and the database-wide gauges."""
        from shared.instrumentation import watch_consumer_lag, watch_database

        self.metrics.declare_consumed([t for sub in self.broker.subscribers for t in getattr(sub, "topic_names", [])])
        interval = self.settings.metrics_poll_interval_s
        self.spawn(watch_consumer_lag(self.broker, self.metrics, interval), f"{self.name}-consumer-lag")
        if self.session_factory is not None:
            self.spawn(watch_database(self.session_factory, self.metrics, interval), f"{self.name}-db-gauges")

    def background(self, name: str, factory) -> None:
        """Run ``factory()`` (a coroutine function) as a task once the service has started."""
        self._background.append((name, factory))

    def on_stop(self, close) -> None:
        """Await ``close()`` (e.g. an HTTP client's aclose) when the service stops."""
        self._on_stop.append(close)

    def spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def stop_consuming(self) -> None:
        """Graceful shutdown, first step: stop fetching and let the message in hand finish
        within TB_SHUTDOWN_GRACE_S (its offset is committed after it); past that it is
        cancelled uncommitted, i.e. handed back to the group for the next process."""
        if not self.broker_enabled:
            return
        log.info("shutdown_draining", grace_s=self.settings.shutdown_grace_s)
        results = await asyncio.gather(*(sub.stop() for sub in self.broker.subscribers), return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):
                log.warning("subscriber_stop_failed", error=type(result).__name__)

    async def stop(self) -> None:
        # Drain before the relay stops, so what the last handler committed is flushed below.
        await self.stop_consuming()
        if self.relay:
            self.relay.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.relay:
            try:
                await self.relay.relay_once()  # flush what was committed, while connected
            except Exception as exc:  # left in the outbox: the next start publishes it
                log.warning("outbox_flush_failed", error=type(exc).__name__)
        if self.broker_enabled:
            await self.broker.stop()
        for close in self._on_stop:
            try:
                await close()
            except Exception as exc:
                log.warning("close_failed", error=type(exc).__name__)
        if self.engine is not None:
            await self.engine.dispose()
        self.executor.shutdown(wait=False, cancel_futures=True)
        if self.blocking_in_flight:
            log.warning("blocking_work_handed_back", count=self.blocking_in_flight)
        flush_traces()
        log.info("service_stopped")

    @asynccontextmanager
    async def running(self) -> AsyncIterator["ServiceRuntime"]:
        """Started inside the block, stopped (outbox flushed) after it: what an ASGI app's
        lifespan wraps, so a web service starts and stops exactly like a worker."""
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    async def run_until_signalled(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def run_service(build) -> None:
    """What every worker's ``main()`` does: settings from the environment, build, run
    until SIGINT/SIGTERM, then stop cleanly (flushing the outbox)."""
    settings = load_settings(build.__module__)  # e.g. services.joiner.main
    built: list[ServiceRuntime] = []

    async def _main() -> None:
        built.append(build(settings))
        await built[0].run_until_signalled()

    asyncio.run(_main())
    if built and built[0].blocking_in_flight:
        # A model call still running in a worker thread: the interpreter would wait for it
        # at exit. Its event was not committed and comes back to the next process.
        os._exit(0)
