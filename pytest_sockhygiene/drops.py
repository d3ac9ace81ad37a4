"""Why a client's pool dropped a connection it could have kept: a request that timed out, a response closed before
its end.

A reused client opens a new connection for a request when its pool has none to give: the server (or something
between) ended the last one, or the pool dropped it itself. The socket hooks see the same thing either way - a
connection closed, another opened - and only the second cause is the client's: a connection whose response did not
come in time cannot carry the next request (its response may still arrive), nor can one whose response was closed
before its end (a server-sent-events stream left after its first event, a download cut short). Told apart, the
verdict names the cause instead of "the server ended each connection" and its "turn keep-alive on" (found with
google-auth's suite, whose timeout tests hit a slow server, and with MCP's SDK, which leaves each POST's event
stream after its answer).

Read at each close (``events.Recorder._emit_close``): a timeout from the exception being handled, within a tracked
client's request; a response closed before its end from ``dropping``, which the trackers set around the method that
closes a response (httpcore's ``_response_closed``, urllib3's ``HTTPResponse.close``, so requests' too) when its body
was not read to its end, or from a ``GeneratorExit`` being handled outside any request: a body's iterator left
before its end and closed (``next(response.iter_content())`` with requests, whose urllib3 closes the connection in
the iterator's own cleanup; any library's the same). And a connection httpcore's pool closes after a response
because the request's own ``Connection: close`` header asked for it (``ASKED_CLOSE``): the server honoured it, and
the fix is the header, not the server's keep-alive (found with httpx's suite). urllib3 (so requests too) closes
such a connection later, where no response's close runs: at the next request, finding it dropped by the server, or
with its pool; its tracker marks the connection as its request is sent (``trackers/urllib3.py``).
"""

from __future__ import annotations

import contextvars
import socket
import sys
from types import FrameType

UNREAD = "a response closed before its end"
"""``dropping``'s value, and ``SocketEvent.dropped``'s, for a connection dropped as its response was closed unread."""

ASKED_CLOSE = "closed as its request asked (a `Connection: close` request header)"
"""``dropping``'s value for a connection a client's pool closed after a response because the request itself asked
for that: the server only honoured it, and "turn keep-alive on in the server" was the wrong fix (found with
httpx's suite)."""

dropping: contextvars.ContextVar[str | None] = contextvars.ContextVar("sockhygiene_dropping", default=None)
"""Set while a client library closes a response before its end (``trackers/httpx.py``). A context variable, not a
thread-local: an async pool's socket is closed by the event loop's callback, which runs in a copy of the context
that scheduled it."""

_TIMEOUTS = (TimeoutError, socket.timeout)  # (one class from Python 3.10 on; ``socket.timeout`` is an OSError on 3.9)

MID_RESPONSE = frozenset({"SEND_RESPONSE", "SEND_BODY"})
"""h11's states of the server's side while its response is not yet read to its end (``DONE`` or ``MUST_CLOSE``
once it is: the second is a server's ``Connection: close``, which is the server's doing)."""


def timed_out() -> str | None:
    """The class name of the timeout being handled where a client's pool closes a socket within a request (a read
    that timed out: urllib3's ``ReadTimeoutError``, httpx's ``ReadTimeout``, ``socket.timeout``, or an error a
    timeout led to), else None. A reset is not one: it is the server's doing."""
    exc: BaseException | None = sys.exc_info()[1]
    outer = exc
    for _ in range(3):  # (the exception, and what it was raised from or while handling: a few levels)
        if exc is None:
            return None
        if isinstance(exc, _TIMEOUTS) or "Timeout" in type(exc).__name__:
            return type(outer).__name__
        exc = exc.__cause__ or exc.__context__
    return None


def body_unread(response: object) -> bool:
    """Whether a urllib3 ``HTTPResponse`` is being closed with its connection still its own and its body not read
    to its end (read to its end, the body's file is closed, and the connection goes back to the pool). False where
    the connection could not have been kept anyway: the response ends it (http.client's ``will_close``: HTTP/1.0,
    ``Connection: close``, a body delimited by the server's close), which is the server's doing, read to the end or
    not (dulwich's pkt-line reader reads exactly the bytes it needs of such a body). False for a response that
    cannot say (urllib3-future's)."""
    try:
        if getattr(response, "_connection", None) is None or bool(getattr(response, "closed", True)):
            return False
        return not getattr(getattr(response, "_original_response", None), "will_close", True)
    except Exception:  # noqa: BLE001 - a property that fails: not known to be unread
        return False


def iterator_left() -> str | None:
    """``UNREAD`` for a connection closed while a ``GeneratorExit`` is being handled outside any request - a body's
    iterator left before its end and closed (urllib3 closes the connection in the iterator's own cleanup, where no
    response's ``close`` runs) - unless the response could not have kept its connection anyway: urllib3's
    ``HTTPResponse`` or httpcore's connection on the stack says so (``will_close``; h11's ``keep_alive``), as
    ``body_unread`` and the httpcore wrapper do. Walked only at such a close, a few frames up."""
    frame: FrameType | None = sys._getframe(2)
    for _ in range(_FRAMES):
        if frame is None:
            break
        obj = frame.f_locals.get("self")
        if obj is not None:
            response = getattr(obj, "_original_response", None)
            if response is not None:  # urllib3's HTTPResponse: http.client's response says whether it was to end
                return None if getattr(response, "will_close", True) else UNREAD
            h11 = getattr(obj, "_h11_state", None)
            if h11 is not None:  # httpcore's connection
                return UNREAD if getattr(getattr(h11, "_cstate", None), "keep_alive", False) else None
        frame = frame.f_back
    return UNREAD


def request_asked_close(frame: FrameType | None) -> bool:
    """Whether the request whose response is being closed asked for its connection to be closed: its
    ``Connection`` header says ``close``. Read from httpcore's response stream a few frames up (its ``_request``,
    whose headers are ``(name, value)`` byte pairs), where h11 says the connection is not kept. False where no
    such request is found (the server's ``Connection: close``, an HTTP/1.0 server)."""
    for _ in range(4):
        if frame is None:
            return False
        request = getattr(frame.f_locals.get("self"), "_request", None)
        headers = getattr(request, "headers", None)
        if isinstance(headers, list):
            try:
                return any(name.lower() == b"connection" and b"close" in value.lower() for name, value in headers)
            except (AttributeError, TypeError, ValueError):
                return False
        frame = frame.f_back
    return False


def headers_ask_close(headers: object) -> bool:
    """Whether a request's headers (urllib3's: a ``dict``, an ``HTTPHeaderDict``, requests' ``CaseInsensitiveDict``;
    names in any case, values ``str`` or ``bytes``) carry ``Connection: close``."""
    items = getattr(headers, "items", None)
    if items is None:
        return False
    try:
        for name, value in items():
            if isinstance(name, bytes):
                name = name.decode("latin-1")
            if name.lower() == "connection":
                if isinstance(value, bytes):
                    value = value.decode("latin-1")
                return "close" in value.lower()
    except (AttributeError, TypeError, ValueError):
        return False
    return False


_FRAMES = 12
"""Frames ``iterator_left`` looks at above the socket's close: a response's cleanup closes it a few calls down."""


__all__ = ["ASKED_CLOSE", "MID_RESPONSE", "UNREAD", "body_unread", "dropping", "headers_ask_close", "iterator_left",
           "request_asked_close", "timed_out"]
