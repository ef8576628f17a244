"""What the three HTTP functions share: request checks, one connection per run, JSON answers.

Cloud Scheduler calls each function with POST and an optional JSON object body. Only POST runs
a job: a GET (a browser, a link checker, a health probe) must never start an export, so every
other method is answered 405 before anything else is looked at. A job returns a JobOutcome; its
summary becomes the response body and one structured log line.

The body is read as it streams, at most MAX_BODY_BYTES + 1 bytes: a chunked body declares no
length, and reading it whole before refusing it would let one request fill the instance's memory.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask

from telemetry_events import logs
from telemetry_events.envvars import SettingError
from telemetry_export.outcome import BadRequest, JobOutcome
from telemetry_export.settings import Settings, load_settings
from telemetry_export.store.connection import Connections, DatabaseError, InterfaceError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
ALLOWED_METHODS = ("POST",)
_READ_SIZE = 8192


@dataclass
class _Process:
    """Per-process state: reused across invocations of a warm function instance."""

    connections: Connections | None = None
    options: dict[str, Any] = field(default_factory=dict)


_process = _Process()


def connections(settings: Settings) -> Connections:
    if _process.connections is None:
        _process.connections = Connections(settings.database)
    return _process.connections


def request_options(raw: bytes, allowed: Mapping[str, type]) -> dict[str, Any]:
    """The JSON body's options, checked against `allowed` (name: type); an empty body means none."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as error:
        # ValueError: not JSON, not UTF-8, or an integer literal too long to convert; RecursionError:
        # nested deeper than the decoder goes. All the caller's doing: 400, never a 500.
        raise BadRequest(f"body is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise BadRequest(f"body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise BadRequest(f"unknown option(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed)) or 'none'}")
    for name, value in body.items():
        expected = allowed[name]
        if not isinstance(value, expected) or isinstance(value, bool) and expected is not bool:
            raise BadRequest(f"option {name} must be {expected.__name__}, got {type(value).__name__}")
    return body


def read_body(request: flask.Request) -> bytes:
    """The request body, refused with _TooLarge as soon as it passes MAX_BODY_BYTES, whatever it declared."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise _TooLarge(f"body of {request.content_length} bytes is over the {MAX_BODY_BYTES} byte limit")
    pieces: list[bytes] = []
    size = 0
    while size <= MAX_BODY_BYTES:
        piece = request.stream.read(min(_READ_SIZE, MAX_BODY_BYTES + 1 - size))
        if not piece:
            return b"".join(pieces)
        pieces.append(piece)
        size += len(piece)
    # What is left unread is the server's to discard (or to close the connection on), not ours to hold.
    raise _TooLarge(f"body is over the {MAX_BODY_BYTES} byte limit (refused after reading {size} bytes)")


class _TooLarge(Exception):
    pass


def handle(
    request: flask.Request,
    job: str,
    run: Callable[[Settings, Connections, dict[str, Any]], JobOutcome],
    allowed: Mapping[str, type] | None = None,
) -> flask.Response:
    """Checks the request, runs `run` and renders its outcome as JSON with the right status."""
    started = time.monotonic()
    if request.method not in ALLOWED_METHODS:
        response = _refusal({"error": f"method {request.method} not allowed; use POST"}, 405)
        response.headers["Allow"] = ", ".join(ALLOWED_METHODS)
        return response
    try:
        # The body first, whole or refused: every answer after this point leaves nothing unread.
        raw = read_body(request)
        settings = load_settings()
        logs.configure(settings.log_level)
        options = request_options(raw, allowed or {})
        outcome = run(settings, connections(settings), options)
    except _TooLarge as error:
        return _refusal({"error": str(error)}, 413)
    except BadRequest as error:
        return _json({"error": str(error)}, 400)
    except SettingError as error:
        logger.error("invalid settings", extra={"job": job, "error": str(error)})
        return _json({"error": f"invalid settings: {error}"}, 500)
    except (DatabaseError, InterfaceError, OSError) as error:
        logger.error("database unavailable", extra={"job": job, "error": str(error)})
        return _json({"error": f"database unavailable: {error}"}, 503)
    summary = {**outcome.summary, "duration_s": round(time.monotonic() - started, 3)}
    severity = logging.ERROR if outcome.unavailable or outcome.misconfigured else logging.INFO
    logger.log(severity, f"{job} run finished", extra={"job": job, **summary})
    return _json(summary, 503 if outcome.unavailable else 500 if outcome.misconfigured else 200)


def _json(body: Mapping[str, Any], status: int) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def _refusal(body: Mapping[str, Any], status: int) -> flask.Response:
    """An answer sent while the request body may still be unread.

    functions-framework reads the whole request body after every non-streamed response (so that
    answering early causes no connection errors), which would undo the streaming limit above and
    buffer a 200 MiB body in memory. A streamed response is exempt; the server then discards what
    is left of the body within its own bounds, or closes the connection.
    """
    text = json.dumps(body).encode()
    response = flask.Response(iter([text]), status=status, mimetype="application/json")
    response.headers["Content-Length"] = str(len(text))
    return response
