"""Structured JSON logs: one object per line, with the reconcile id and revision when known.

Every line goes through :func:`credentials.redact` (a URL's user information is masked,
whatever logged it), and an exception is one ``error`` string: its type and message, with
the file and line where it was raised, never a multi-line traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
import traceback

from reconciler.controller import credentials

_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = traceback.extract_tb(exc.__traceback__)
            where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
            out["error"] = f"{type(exc).__name__}: {str(exc)[:500]}{where}"
        return credentials.redact(json.dumps(out, default=str))


def configure(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("cu-reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
