"""Failure text: what leaked, where it was opened, and the one sentence that fixes it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Callable, Optional

from .baseline import allowed
from .endpoints import format_endpoint
from .origin import Origin, created
from .verdict import (
    AFTER_TIMEOUTS,
    CAUSE_ADVICE,
    OPENED_BY,
    PER_CLIENT_UNREAD,
    RECONNECTED,
    UNREAD_EACH,
    Item,
    Verdict,
    Violation,
    advice,
    cause_of,
    made_inside_method,
)

OriginFormatter = Callable[[Optional[Origin]], str]

_TITLES = {
    "established": "open connection(s) left behind",
    "close_wait": "connection(s) left in CLOSE_WAIT",
    "listen": "listening socket(s) left open",
    "time_wait": "TIME_WAIT entries from connections this test closed",
    "connections": "connections opened",
    "clients": "client(s) created and never closed",
    "unused_clients": "client(s) that never opened a connection, never closed",
}


_SAYS_HOW = ("opened in a task", "accepted by", "opened by library code", "opened by C code", "opened inside",
             "origin unknown")


def _at(prefix: str, where: str) -> str:
    """``opened at test_x.py:3 in test_x``, or the origin alone when it says how the socket came to be
    (``opened in a task started at ...``, ``accepted by the listener at ... opened at ...``), or says it is not known
    (``origin unknown (opened by library or C code ...)``, never "opened at origin unknown")."""
    return where if where.startswith(_SAYS_HOW) else f"{prefix} {where}"


def _item_line(kind: str, item: Item, fmt: OriginFormatter) -> str:
    where = fmt(item.origin)
    if kind == "time_wait":
        line = (f"{item.count} connection(s) to {format_endpoint(item.remote)} were opened and closed by this "
                f"test, {_at('at', where)}")
    elif kind == "connections":
        line = f"{item.count} connection(s) to {format_endpoint(item.remote)}, {_at('at', where)}"
    elif kind in ("clients", "unused_clients"):
        # clients of one kind created at one line are one item (a loop that leaks 30 is one line): say how many
        many = f"{item.count} " if item.count > 1 else ""
        line = f"{many}{item.state}, {created(where)}"
    elif item.state == "LISTEN":
        line = f"LISTEN {format_endpoint(item.local)} fd={item.fd}, {_at('opened at', where)}"
    else:
        line = (f"{item.state} {format_endpoint(item.local)} -> {format_endpoint(item.remote)} fd={item.fd}, "
                f"{_at('opened at', where)}")
    if item.note:
        line += f" ({item.note})"
    return line


_PER_SERVER = ("time_wait", "connections")
"""Kinds whose items are groups of connections to one server address (``verdict.time_wait_items``,
``connection_items``)."""


def _host_lines(kind: str, items: Sequence[Item], fmt: OriginFormatter) -> list[str]:
    """One line per server address, except where one line of code connected to several ports of one host: those
    groups are one line, "6 connection(s) to 127.0.0.1 (ports ...)". An FTP client's data connections go to a new
    port each (pyftpdlib's suite read six lines of "1 connection(s) to 127.0.0.1:<port>" for one loop); so do
    the connections to several servers of a test's own. Text only: the report's items stay one per address."""
    by_host: dict[tuple[str | None, Origin | None, str], list[Item]] = {}
    for item in items:
        host = item.remote[0] if item.remote is not None else None
        by_host.setdefault((host, item.origin, item.note), []).append(item)
    lines: list[str] = []
    for (host, _, _), group in by_host.items():
        if len(group) == 1 or host is None:
            lines.extend(_item_line(kind, item, fmt) for item in group)
            continue
        ports = sorted(item.remote[1] for item in group if item.remote is not None)
        shown = ", ".join(str(p) for p in ports[:8]) + (f" and {len(ports) - 8} more" if len(ports) > 8 else "")
        first = group[0]
        merged = Item(first.state, first.local, first.remote, first.fd, first.origin,
                      sum(item.count for item in group), first.note)
        line = _item_line(kind, merged, fmt)
        address = format_endpoint(first.remote)
        lines.append(line.replace(f" to {address}", f" to {address.rsplit(':', 1)[0]} (ports {shown})", 1))
    return lines


_ENDED = "socket(s) left open after their connection ended"
"""The title of an ``established`` violation whose sockets are all in state CLOSE: reset, or shut down both
ways, but the fd is still held. What leaks is the fd, not a connection."""


def _title(v: Violation) -> str:
    if v.kind == "established" and v.items and all(item.state == "CLOSE" for item in v.items):
        return _ENDED
    return _TITLES.get(v.kind, v.kind)


def violation_lines(v: Violation, fmt: OriginFormatter, max_items: int = 20, doctest: bool = False) -> list[str]:
    """A violation's lines of the failure text. ``doctest``: the test is a doctest, which takes no marker."""
    lines = [f"{v.kind}: {v.count} > limit {v.limit} - {_title(v)}"]
    if v.kind in _PER_SERVER:
        shown = _host_lines(v.kind, v.items, fmt)
        lines.extend("    " + line for line in shown[:max_items])
        if len(shown) > max_items:
            lines.append(f"    ... and {len(shown) - max_items} more")
    else:
        for item in v.items[:max_items]:
            lines.append("    " + _item_line(v.kind, item, fmt))
        if len(v.items) > max_items:
            lines.append(f"    ... and {len(v.items) - max_items} more")
    for source in v.context:
        lines.append("    " + _source_line(source, fmt))
    singles = [s for s in v.context if s.note == "1 request each" and not s.state.startswith(OPENED_BY)]
    if len(singles) > 1 and all(s.count == 1 for s in singles):  # (one line each: no line said it on its own)
        lines.append(f"    {len(singles)} clients of 1 request each: a new client per request? Create one client and "
                     "reuse it.")
    cause = cause_of(v.context, v.items)
    lines.append("    fix: " + (CAUSE_ADVICE[cause] if cause else advice(v)))
    lines.append("    to allow it: " + allow_text({v.kind: v.count}, doctest))
    return lines


def _source_line(source: Item, fmt: OriginFormatter) -> str:
    """One line of what opened a violation's connections (``verdict.connection_sources``): a function-scoped
    fixture or an API without a pool (``state`` starts with "opened by "), or a group of clients."""
    if source.state.startswith(OPENED_BY):
        return f"{source.count} connection(s) {source.state}, {_at('at', fmt(source.origin))} ({source.note})"
    line = f"{source.count} {source.state} {created(fmt(source.origin))} ({source.note})"
    if RECONNECTED in source.note:
        line += (": the server, or a proxy or middleware between, ended each connection (`Connection: close`, "
                 "an HTTP/1.0 server, a limit on requests per connection, or an idle timeout shorter than the pauses "
                 "between requests)")
    elif AFTER_TIMEOUTS in source.note:
        line += ": a connection whose response did not come in time is not reused"
    elif PER_CLIENT_UNREAD in source.note:
        line += ": a new client per request? Create one client and reuse it, and read each response to its end"
    elif UNREAD_EACH in source.note:
        line += ": a connection whose response was not read to its end is not reused"
    elif source.count > 1 and source.note == "1 request each":
        method = made_inside_method(source.origin)
        if method is None:
            line += ": a new client per request? Create one client and reuse it."
        else:  # the user's object made them (an SDK's client making a session per call): a new one of it is no fix
            line += (f": {method[0]}() made a new one for each call: give the {method[1]} one {source.state} to "
                     "reuse, if it takes one (a `session=` or `http_client=` argument), or allow it for this test.")
    return line


def allow_marker(counts: Mapping[str, int]) -> str:
    """The marker that would allow what was seen: the test author often does not own the code that churns."""
    return "@pytest.mark.sockhygiene(" + ", ".join(f"{k}={n}" for k, n in counts.items()) + ")"


def allow_text(counts: Mapping[str, int], doctest: bool = False) -> str:
    """How to allow what was seen: the marker; for a doctest, which no marker reaches (it is no function a
    decorator could mark), the ``sockhygiene`` fixture's ``set_limits`` called from its first example, through
    doctest's ``getfixture``. Assigned to ``_``: the Limits it returns would be printed, an output the example
    does not expect."""
    if not doctest:
        return allow_marker(counts)
    keys = ", ".join(f"{k}={n}" for k, n in counts.items())
    return f">>> _ = getfixture('sockhygiene').set_limits({keys})  (as the doctest's first example)"


def failure_text(nodeid: str, verdict: Verdict, fmt: OriginFormatter,
                 grown: Sequence[tuple[str, int, int]] = (), doctest: bool = False) -> str:
    """A test's failure text. ``doctest``: the test is a doctest (``allow_text``)."""
    lines = [f"sockhygiene: {nodeid} broke its socket limits"]
    for v in verdict.violations:
        lines.extend(["  " + line for line in violation_lines(v, fmt, doctest=doctest)])
    if len(verdict.violations) > 1:
        lines.append("  to allow all of it: " + allow_text({v.kind: v.count for v in verdict.violations}, doctest))
    for thread in verdict.threads:
        lines.append(f"  {thread}")
    for kind, count, base in grown:
        lines.append(f"  {kind}: {count} (baseline {base}) - grew beyond the baseline's tolerance "
                     f"(at most {allowed(base)}); fix the regression, or accept it with --sockhygiene-baseline-update")
    return "\n".join(lines)
