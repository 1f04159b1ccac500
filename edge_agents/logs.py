"""Structured logs for the agent: one event per line, as JSON or as ``key=value`` text.

Every log call in the agent names an event and its fields
(``log.warning("sensor read failed", sensor_id="aq-01", error="timeout")``), so
a log shipper or ``journalctl -o cat | jq`` can filter on them. The command
line configures the output once, at start; library code only takes loggers.

>>> import io, json
>>> out = io.StringIO()
>>> configure_logging(LogFormat.JSON, level="info", stream=out)
>>> structlog.get_logger("demo").info("sensor open", sensor_id="aq-01")
>>> record = json.loads(out.getvalue())
>>> record["event"], record["sensor_id"], record["level"]
('sensor open', 'aq-01', 'info')
"""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import TextIO

import structlog

__all__ = ["LogFormat", "configure_logging"]


class LogFormat(StrEnum):
    """How log events are written."""

    JSON = "json"
    """One JSON object per line: for journald with a log shipper, or files."""
    TEXT = "text"
    """``timestamp level event key=value ...``: for a person at a terminal."""


def configure_logging(
    log_format: LogFormat = LogFormat.TEXT, *, level: str = "info", stream: TextIO | None = None
) -> None:
    """Set up structlog for the process: format, level and where lines go.

    Args:
        log_format: JSON lines or key=value text.
        level: the lowest level written (``debug``, ``info``, ``warning``, ``error``).
        stream: where to write; standard error by default (journald takes it).
    """
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if log_format is LogFormat.JSON
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
