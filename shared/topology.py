"""The event topology, declared once: for every service, the topics it consumes (and its
consumer group) and the topics it produces; the payload of each topic is its model in
shared.contracts.events. Subscriptions are created from this declaration
(ServiceRuntime.consume), the outbox and the direct publish path refuse a topic the
producing service does not declare, and devtools/docs.py generates the AsyncAPI document
and the README's topic table from it.

Every consumer also writes rejected records to ``<topic>.dlq`` (shared.broker.publish_dlq):
that is a property of the runtime, not of one service, so it is not declared per service."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.contracts.events import TOPIC_MODELS, Event, Topic


class TopologyError(RuntimeError):
    """A service consumes or produces something its declaration does not list."""


@dataclass(frozen=True)
class ServiceTopology:
    name: str
    summary: str
    consumes: tuple[Topic, ...]
    produces: tuple[Topic, ...]
    # None: no consumer group (every replica reads every record, nothing is committed).
    # TB_CONSUMER_GROUP overrides a declared group (tests run isolated groups).
    group: str | None

    def payload(self, topic: Topic) -> type[Event]:
        return TOPIC_MODELS[topic]

    def subscription(self, handled: Iterable[Topic | str]) -> list[str]:
        """The consumed topic names, after checking that ``handled`` (the topics the
        service has handlers for) is exactly the declared set: raises TopologyError at
        start-up otherwise."""
        handled_topics = {Topic(t) for t in handled}
        undeclared = sorted(t.value for t in handled_topics if t not in self.consumes)
        unhandled = sorted(t.value for t in self.consumes if t not in handled_topics)
        if undeclared or unhandled:
            raise TopologyError(
                f"{self.name}: handlers for undeclared topics {undeclared}, declared topics without a handler "
                f"{unhandled}; change shared/topology.py and run `make docs`"
            )
        return [t.value for t in self.consumes]

    def routes(self, handlers: Mapping[Topic | str, object]) -> dict[str, object]:
        """``handlers`` (topic -> handler) keyed by topic name, checked as ``subscription``."""
        self.subscription(handlers)
        return {Topic(key).value: handler for key, handler in handlers.items()}

    def check_produces(self, topic: Topic) -> None:
        if topic not in self.produces:
            raise TopologyError(f"{self.name} produces {topic.value}, which shared/topology.py does not declare")


GATEWAY = ServiceTopology(
    name="gateway",
    summary="REST/SSE/WebSocket API: accepts uploads and commands, streams session status.",
    consumes=(Topic.SESSION_STATUS, Topic.SESSION_DELETED),
    produces=(Topic.AUDIO_UPLOADED, Topic.SESSION_DELETED, Topic.NOTES_REGENERATE, Topic.TRANSCRIPT_REMERGE,
              Topic.NOTES_SIGNED),
    group=None,  # every replica wakes its own streams; history comes from PostgreSQL
)
TRANSCRIBER = ServiceTopology(
    name="transcriber",
    summary="Speech to text with word timings; a long recording is split at pauses into chunks that every "
            "replica takes from transcript.chunk, and the replica finishing the last one assembles the transcript.",
    consumes=(Topic.AUDIO_UPLOADED, Topic.TRANSCRIPT_CHUNK, Topic.SESSION_DELETED),
    produces=(Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED, Topic.SESSION_PROGRESS, Topic.TRANSCRIPT_CHUNK),
    group="transcriber",
)
DIARIZER = ServiceTopology(
    name="diarizer",
    summary="Who spoke when.",
    consumes=(Topic.AUDIO_UPLOADED, Topic.SESSION_DELETED),
    produces=(Topic.DIARIZATION_READY, Topic.DIARIZATION_FAILED, Topic.SESSION_PROGRESS),
    group="diarizer",
)
JOINER = ServiceTopology(
    name="joiner",
    summary="Merges transcript and diarization into a speaker-labelled transcript with roles.",
    consumes=(Topic.TRANSCRIPT_READY, Topic.DIARIZATION_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_FAILED,
              Topic.TRANSCRIPT_REMERGE, Topic.SESSION_DELETED),
    produces=(Topic.TRANSCRIPT_MERGED,),
    group="joiner",
)
NOTES = ServiceTopology(
    name="notes",
    summary="Clinical notes with risk flags from the merged transcript.",
    consumes=(Topic.TRANSCRIPT_MERGED, Topic.NOTES_REGENERATE, Topic.SESSION_DELETED),
    produces=(Topic.NOTES_READY, Topic.NOTES_FAILED, Topic.SESSION_PROGRESS),
    group="notes",
)
PROGRESS = ServiceTopology(
    name="progress",
    summary="The session read model in PostgreSQL; publishes each session's status.",
    consumes=(Topic.AUDIO_UPLOADED, Topic.TRANSCRIPT_READY, Topic.TRANSCRIPT_FAILED, Topic.DIARIZATION_READY,
              Topic.DIARIZATION_FAILED, Topic.TRANSCRIPT_MERGED, Topic.NOTES_READY, Topic.NOTES_FAILED,
              Topic.SESSION_PROGRESS, Topic.SESSION_DELETED),
    produces=(Topic.SESSION_STATUS,),
    group="progress",
)

SERVICES: dict[str, ServiceTopology] = {s.name: s for s in (GATEWAY, TRANSCRIBER, DIARIZER, JOINER, NOTES, PROGRESS)}

TOPIC_SUMMARIES: dict[Topic, str] = {
    Topic.AUDIO_UPLOADED: "A recording was accepted; transcription and diarization start.",
    Topic.TRANSCRIPT_READY: "Transcript with word timings.",
    Topic.TRANSCRIPT_FAILED: "Transcription failed (fatal for the session).",
    Topic.DIARIZATION_READY: "Who spoke when.",
    Topic.DIARIZATION_FAILED: "Diarization failed (recoverable: the transcript is merged without speakers).",
    Topic.TRANSCRIPT_MERGED: "Speaker-labelled transcript with roles.",
    Topic.NOTES_READY: "Structured clinical notes with risk flags.",
    Topic.NOTES_FAILED: "Notes failed; the transcript stays available.",
    Topic.SESSION_PROGRESS: "A stage's progress tick.",
    Topic.SESSION_STATUS: "The session's status (seq is monotonic per session).",
    Topic.SESSION_DELETED: "The session was deleted: forget everything about it.",
    Topic.NOTES_REGENERATE: "Command: re-run notes, optionally with another backend.",
    Topic.TRANSCRIPT_REMERGE: "Command: re-merge transcript and diarization.",
    Topic.NOTES_SIGNED: "A therapist signed the session's notes (locked; addenda may follow): for other systems, e.g. an EHR.",
    Topic.TRANSCRIPT_CHUNK: "Work item: one chunk of a long recording, keyed session:index so chunks spread over "
                            "partitions (and so over transcriber replicas).",
}

# Topics published for systems outside this project only: no service here consumes them.
EXTERNAL_ONLY: frozenset[Topic] = frozenset({Topic.NOTES_SIGNED})


def producers_of(topic: Topic) -> list[ServiceTopology]:
    return [s for s in SERVICES.values() if topic in s.produces]


def consumers_of(topic: Topic) -> list[ServiceTopology]:
    return [s for s in SERVICES.values() if topic in s.consumes]


def check_produces(source: str, topic: Topic) -> None:
    """Raise TopologyError when ``source`` is a declared service publishing a topic it does
    not declare. Other sources (tests, operator tools) are not services and pass."""
    service = SERVICES.get(source)
    if service is not None:
        service.check_produces(topic)
