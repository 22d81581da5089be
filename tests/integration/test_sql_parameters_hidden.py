"""SQL parameters never reach an error message or a log (issue 11, item 3): they are
patient data. The engine every service uses hides them (hide_parameters=True)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from shared.db.engine import create_engine

MARKER = "zanzibar-patient-name"


def test_failed_statement_does_not_carry_its_parameters(settings, caplog):
    async def run() -> str:
        engine = create_engine(settings)
        try:
            async with engine.connect() as conn:
                # The server's own message names the table, not the value: only
                # SQLAlchemy could put the parameter into the error text.
                await conn.execute(text("SELECT :name FROM no_such_table_for_this_test"), {"name": MARKER})
        except DBAPIError as exc:
            logging.getLogger("tests.sql").error("statement failed: %s", exc)
            return str(exc)
        finally:
            await engine.dispose()
        pytest.fail("the statement should have failed")

    with caplog.at_level(logging.DEBUG):
        message = asyncio.run(run())
    assert "no_such_table_for_this_test" in message  # the error is the real one
    assert MARKER not in message
    assert "hidden" in message
    assert MARKER not in caplog.text
