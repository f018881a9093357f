"""How Strata's servers log: one handler on stderr, as text lines or as JSON objects.

uvicorn applies the configuration built here (serving.serve), so its own lines, the
access log included, take the same format as Strata's. `--log-level` sets Strata's
loggers (`strata.*`) and uvicorn's, except that uvicorn stays at info when Strata's go
to debug: its debug lines trace every WebSocket frame, and debug is meant to give one
line per request. Other libraries stay at warning, or httpx alone would log every
forward to the cloud at info.

With `--log-format json` each record is one JSON object per line (python-json-logger),
with `time`, `level`, `logger`, `message` and the record's extra fields, such as the
edge's `connection` and `request_id`, for collectors (Loki, Fluent Bit, Elastic).
"""

from __future__ import annotations

from pythonjsonlogger.core import RESERVED_ATTRS

FORMATS = ("text", "json")
LEVELS = ("debug", "info", "warning", "error")


def log_config(level: str, log_format: str) -> dict:
    """A logging.config.dictConfig dictionary (what uvicorn.Config's log_config takes);
    ValueError for a level or format not in LEVELS or FORMATS."""
    if level not in LEVELS or log_format not in FORMATS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)} and format one of {', '.join(FORMATS)}; "
                         f"got {level!r} and {log_format!r}")
    if log_format == "json":
        formatter = {"()": "pythonjsonlogger.json.JsonFormatter",
                     "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
                     "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
                     "reserved_attrs": [*RESERVED_ATTRS, "color_message"]}  # uvicorn's extra: ANSI colours
    else:  # uvicorn's own look: "INFO:     message"
        formatter = {"()": "uvicorn.logging.DefaultFormatter", "fmt": "%(levelprefix)s %(message)s",
                     "use_colors": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"line": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line", "stream": "ext://sys.stderr"}},
        "loggers": {"strata": {"level": level.upper()}, "uvicorn": {"level": "INFO" if level == "debug" else level.upper()}},
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }
