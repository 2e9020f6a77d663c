"""structlog set-up: JSON lines, dotted event names, nothing secret or personal."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from shared.redaction import SECRET_KEYS, redact

__all__ = ["configure_logging", "log_ids", "redact"]
from shared.settings import Settings


def _redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event_dict.items()):
        if key in SECRET_KEYS:
            event_dict[key] = "***"
        elif isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def _orjson_dumps(value: Any, **kwargs: Any) -> str:
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an integer beyond 64 bits: the slow path still logs it
        return json.dumps(value, **kwargs)


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """structlog as the settings say, one write per line to `stream` (default: stderr)."""
    level = logging.getLevelNamesMapping().get(settings.log_level.upper(), logging.INFO)
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)


# Ids per line in lines that list events: a line stays under PIPE_BUF (4096 bytes), so lines of
# several processes sharing a pipe never interleave.
IDS_PER_LINE = 64


def log_ids(logger: Any, event: str, event_ids: list[str], **fields: Any) -> None:
    """`logger.info(event, count=..., event_ids=[...], **fields)`, a line per IDS_PER_LINE ids."""
    for start in range(0, len(event_ids), IDS_PER_LINE):
        chunk = event_ids[start : start + IDS_PER_LINE]
        logger.info(event, count=len(chunk), event_ids=chunk, **fields)
