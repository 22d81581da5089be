"""Test fixtures: a real PostgreSQL database per run (created, migrated, dropped) and a
real Kafka-protocol broker (the local Tansu unless TB_KAFKA_BOOTSTRAP_SERVERS/
KAFKA_BOOTSTRAP_SERVERS point at one; no Docker engine here for testcontainers)."""

from __future__ import annotations

import asyncio
import os
import secrets
import uuid
from pathlib import Path

import pytest

from shared.db.bootstrap import drop_database, prepare_database
from devtools.localbroker import LocalBroker, ensure_topics
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
ARTIFACTS = ROOT / "test-artifacts"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")


def _base_url() -> str:
    url = os.environ.get("TB_DATABASE_URL") or os.environ.get("DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    return url.rsplit("/", 1)[0]


@pytest.fixture(scope="session")
def infra(tmp_path_factory):
    """(database_url, bootstrap_servers, blob_dir) shared by the whole run."""
    db_url = f"{_base_url()}/tb_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(prepare_database(db_url))
    bootstrap = os.environ.get("TB_KAFKA_BOOTSTRAP_SERVERS") or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    broker = None
    if not bootstrap:
        ARTIFACTS.mkdir(exist_ok=True)
        broker = LocalBroker(log_path=ARTIFACTS / "tansu.log").start()
        bootstrap = broker.bootstrap_servers
        print(f"\n[tests] broker: local Tansu on {bootstrap}; database: {db_url.rsplit('/', 1)[1]}")
    else:
        print(f"\n[tests] broker: external {bootstrap}")
    asyncio.run(ensure_topics(bootstrap, 4))
    blob_dir = tmp_path_factory.mktemp("blobs")
    yield db_url, bootstrap, blob_dir
    if broker:
        broker.stop()
    asyncio.run(drop_database(db_url))


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    """A random signing secret per run: the tests run in production mode, like a deployment."""
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="session")
def settings(infra, jwt_secret) -> Settings:
    db_url, bootstrap, blob_dir = infra
    return Settings(
        database_url=db_url, kafka_bootstrap_servers=bootstrap, blob_dir=blob_dir, log_format="console",
        outbox_poll_interval_s=0.1, jwt_secret=jwt_secret,
    )


@pytest.fixture(scope="session")
def service_env(settings) -> dict[str, str]:
    """Environment for service processes started by a test."""
    return {
        "TB_DATABASE_URL": settings.database_url,
        "TB_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "TB_BLOB_DIR": str(settings.blob_dir),
        "TB_JWT_SECRET": settings.jwt_secret.get_secret_value(),
        "TB_LOG_FORMAT": "json",
        "TB_OUTBOX_POLL_INTERVAL_S": "0.1",
        "HF_HUB_OFFLINE": "1",
    }


@pytest.fixture(scope="session")
def risk_detector():
    """The notes service's risk safety net with its semantic layer, loaded once per run."""
    from services.notes.risk import RiskDetector
    from services.notes.risk_semantic import SemanticRiskModel

    return RiskDetector(semantic=SemanticRiskModel())
