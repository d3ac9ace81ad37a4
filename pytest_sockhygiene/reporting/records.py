"""A test's record (a dict, as the JSON report and the xdist transport carry it) back into the values the terminal
prints: ``Verdict`` and baseline growth, so that ``report.failure_text`` and ``summary.summary_lines`` give the
same text from a report file as they gave in the run.

The terminal text is made from ``Item`` values whose origins are ``(file, line, function)`` tuples; a record
holds each origin already formatted. Items rebuilt here hold that string as their origin, and ``format_origin``
below prints it back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..endpoints import Endpoint
from ..origin import format_origin as _format_origin
from ..report import failure_text
from ..results import SessionResults
from ..verdict import KINDS, Item, Verdict, Violation

Grown = list[tuple[str, int, int]]


def format_origin(origin: Any) -> str:
    """The origin formatter for rebuilt items: their origins are the record's strings already."""
    if isinstance(origin, str):
        return origin
    return _format_origin(origin)


def parse_endpoint(text: str | None) -> Endpoint | None:
    """``127.0.0.1:80`` or ``[::1]:80`` (``endpoints.format_endpoint``'s spelling) back to ``(host, port)``."""
    if not text:
        return None
    if text.startswith("[") and "]:" in text:
        host, _, port = text[1:].partition("]:")
    else:
        host, _, port = text.rpartition(":")
    try:
        return (host, int(port))
    except ValueError:  # not something format_endpoint wrote: print it as it is, with no port
        return (text, 0)  # pragma: no cover - only a hand-edited report gets here


def _item(d: Mapping[str, Any]) -> Item:
    return Item(
        state=str(d.get("state", "")),
        local=parse_endpoint(d.get("local")),
        remote=parse_endpoint(d.get("remote")),
        fd=d.get("fd"),
        origin=d.get("origin"),  # the formatted string: see format_origin
        count=int(d.get("count", 1)),
        note=d.get("note") or "",
    )


def verdict_of(record: Mapping[str, Any]) -> tuple[Verdict, Grown]:
    """The verdict and baseline growth a record was made from (``results.test_record``'s inverse)."""
    violations: list[Violation] = []
    grown: Grown = []
    for v in record.get("violations", []):
        if v.get("kind") == "baseline":
            for i in v.get("items", []):
                grown.append((str(i.get("state")), int(i.get("count", v.get("count", 0))),
                              int(i.get("baseline", 0))))
            continue
        violations.append(Violation(
            kind=str(v["kind"]), count=int(v["count"]), limit=int(v["limit"]),
            items=tuple(_item(i) for i in v.get("items", [])),
            context=tuple(_item(i) for i in v.get("context", [])),
        ))
    return Verdict(counts=dict(record.get("counts", {})), violations=tuple(violations)), grown


def text_of(record: Mapping[str, Any]) -> str:
    """The failure text the terminal showed for this record's test ('' for a clean test)."""
    if record.get("clean", True) and not record.get("violations"):
        return ""
    verdict, grown = verdict_of(record)
    return failure_text(str(record["nodeid"]), verdict, format_origin, grown, doctest=bool(record.get("doctest")))


def origins_of(record: Mapping[str, Any]) -> dict[str, str]:
    """What ``results.test_record`` keeps as ``origins``: the first item's origin of a time_wait or connections
    violation (the summary prints it beside the worst offenders)."""
    out: dict[str, str] = {}
    for v in record.get("violations", []):
        if v.get("kind") in ("time_wait", "connections") and v.get("kind") not in out:
            items = v.get("items") or []
            if items and items[0].get("origin"):
                out[v["kind"]] = items[0]["origin"]
    return out


class ReportResults(SessionResults):
    """A report file's results, for ``summary.summary_lines``: the tests as records, the session's figures as the
    report has them (a merged report's are the shards' combined, not recomputed from its tests)."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        super().__init__()
        self._session = dict(document["session"])
        self.rerun_after_violations = list(self._session.get("rerun_after_violations", ()))  # (older reports: none)
        for t in document["tests"]:
            sample = t.get("sample") or {}
            # a kind an older report lacks: 0; a count the run could not measure: None, as recorded
            counts = {k: None if t["counts"].get(k, 0) is None else int(t["counts"].get(k, 0)) for k in KINDS}
            self.add({**t, "counts": counts, "stop": sample.get("time") or 0.0, "fds": sample.get("fds"),
                      "origins": origins_of(t)})

    def session(self, records: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
        return dict(self._session)


def in_order(records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Offenders first (in report order), then the rest: how ``show`` and the HTML page list tests."""
    return [r for r in records if not r.get("clean", True)] + [r for r in records if r.get("clean", True)]
