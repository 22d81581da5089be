"""structlog JSON logging, bound to session_id and trace_id.

PHI rule: log ids, counts, durations and error codes, never transcript text, notes,
quotes or names. ``redact_phi`` drops well-known PHI keys as a second line of defence.
"""

from __future__ import annotations

import logging
import sys

import structlog

PHI_KEYS = frozenset(
    {"text", "transcript", "full_text", "notes", "quote", "evidence", "segments", "words", "name", "email", "password"}
)


def redact_phi(_logger, _method, event_dict):
    for key in list(event_dict):
        if key in PHI_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "json", service: str = "therapybridge") -> None:
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_phi,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)
    # Libraries log through stdlib logging; keep them quiet and on the same stream.
    logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="%(levelname)s %(name)s %(message)s")


def error_location(exc: BaseException) -> str:
    """file:line of the innermost frame: enough to find a bug without logging the
    exception's message or traceback values, which may hold transcript text."""
    from pathlib import Path

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}" if tb else "?"


def get_logger(name: str | None = None):
    return structlog.get_logger(name)
