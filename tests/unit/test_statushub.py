"""StatusHub stream slots: per-therapist and total caps with a reason, idempotent release."""

from __future__ import annotations

import uuid

import pytest

from services.gateway.statushub import StatusHub, StreamLimitReached


def test_per_therapist_cap_refuses_with_a_reason_and_frees_on_release():
    hub = StatusHub(max_per_therapist=2, max_total=10)
    a, b = uuid.uuid4(), uuid.uuid4()
    first, _second = hub.open_stream(a), hub.open_stream(a)
    with pytest.raises(StreamLimitReached, match="limit 2"):
        hub.open_stream(a)
    hub.open_stream(b)  # another therapist is not affected
    first.release()
    first.release()  # idempotent: the stream's cleanup and the response's background both call it
    assert hub.streams_of(a) == 1 and hub.open_streams == 2
    hub.open_stream(a)
    assert hub.streams_of(a) == 2


def test_total_cap_refuses_everyone():
    hub = StatusHub(max_per_therapist=5, max_total=3)
    slots = [hub.open_stream(uuid.uuid4()) for _ in range(3)]
    with pytest.raises(StreamLimitReached, match="server"):
        hub.open_stream(uuid.uuid4())
    for slot in slots:
        slot.release()
    assert hub.open_streams == 0 and hub._streams == {}
