"""`make run` replicas: TB_REPLICAS_<SERVICE> processes per service, labelled apart, in one
consumer group, with enough partitions for all of them, scraped under their service."""

from __future__ import annotations

from devtools.stack import partitions_for, process_labels, scrape_targets
from shared.settings import Settings

NAMES = ["gateway", "transcriber", "diarizer", "joiner", "notes", "progress"]


def test_one_process_per_service_by_default():
    labels = process_labels(Settings(), NAMES)
    assert labels == [(n, n) for n in NAMES]
    assert partitions_for(Settings(), NAMES) == Settings().kafka_topic_partitions


def test_replicas_are_separate_labelled_processes_of_the_same_service(monkeypatch):
    monkeypatch.setenv("TB_REPLICAS_TRANSCRIBER", "3")
    monkeypatch.setenv("TB_KAFKA_TOPIC_PARTITIONS", "2")
    settings = Settings()
    labels = process_labels(settings, NAMES)
    assert [lab for svc, lab in labels if svc == "transcriber"] == ["transcriber-1", "transcriber-2", "transcriber-3"]
    assert sum(svc == "diarizer" for svc, _ in labels) == 1
    assert partitions_for(settings, NAMES) == 3  # every replica gets a partition


def test_replicas_are_scraped_as_their_service():
    targets = scrape_targets("127.0.0.1:8000", {"transcriber-1": 9101, "transcriber-2": 9102, "joiner": 9103})
    labels = [t["labels"] for t in targets[1:]]
    assert labels == [{"service": "joiner"}, {"service": "transcriber", "replica": "transcriber-1"},
                      {"service": "transcriber", "replica": "transcriber-2"}]
