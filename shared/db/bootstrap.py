"""Create the database if missing, run Alembic migrations, and drop test databases."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]


def _asyncpg_dsn(url: str, database: str | None = None) -> tuple[str, str]:
    parsed = make_url(url)
    db = parsed.database or "therapybridge"
    admin = parsed.set(drivername="postgresql", database=database or "postgres")
    return admin.render_as_string(hide_password=False), db


async def ensure_database(url: str) -> bool:
    """CREATE DATABASE if it does not exist (needs autocommit, hence asyncpg directly)."""
    admin_dsn, name = _asyncpg_dsn(url)
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
            return True
        return False
    finally:
        await conn.close()


async def drop_database(url: str) -> None:
    admin_dsn, name = _asyncpg_dsn(url)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_head(url: str) -> None:
    """Run ``alembic upgrade head``. Synchronous: its env.py runs its own event loop,
    so call it from a thread (asyncio.to_thread) when a loop is already running."""
    from alembic import command

    command.upgrade(_alembic_config(url), "head")


async def prepare_database(url: str) -> None:
    await ensure_database(url)
    await asyncio.to_thread(upgrade_head, url)


if __name__ == "__main__":  # `python -m shared.db.bootstrap`: what `make migrate` runs
    from shared.settings import load_settings

    asyncio.run(prepare_database(load_settings("migrate").database_url))
    print("database ready")
