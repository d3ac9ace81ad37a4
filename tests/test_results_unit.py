"""``results``: a violating test's record defers its items until something reads them (no pytest run needed)."""

from __future__ import annotations

import json

from pytest_sockhygiene import results as results_mod
from pytest_sockhygiene.origin import format_origin
from pytest_sockhygiene.results import Deferred, SessionResults, full_record
from pytest_sockhygiene.summary import summary_lines
from pytest_sockhygiene.verdict import KINDS, Item, Verdict, Violation

LOCAL = ("127.0.0.1", 40001)
SERVER = ("127.0.0.1", 8000)
LINE = ("/src/test_x.py", 12, "test_burst")


def _verdict() -> Verdict:
    counts = dict.fromkeys(KINDS, 0)
    counts.update(time_wait=7, connections=7)
    burst = Item(state="TIME_WAIT", local=None, remote=SERVER, origin=LINE, count=7, tuples=((LOCAL, SERVER),))
    source = Item(state="httpx.Client", local=None, remote=None, origin=LINE, count=7, note="1 request each")
    return Verdict(counts=counts, violations=(Violation("time_wait", 7, 5, (burst,), (source,)),))


def _record() -> object:
    return results_mod.test_record("test_x.py::test_burst", _verdict(), [], lambda o: format_origin(o), 1.0, 12,
                       locate=lambda o: ("test_x.py", 12) if o else None)


def test_the_summary_reads_a_violating_record_without_its_items() -> None:
    record = _record()
    assert isinstance(record, Deferred)
    results = SessionResults()
    results.add_local(record)
    lines = summary_lines(results, verbose=False)
    assert lines[0] == "1 test checked, 1 with violations (time_wait: 1)"
    assert any("test_x.py::test_burst  [over limit 5]" in line for line in lines), lines
    # nothing read the items: they were never made
    assert record.head["violations"] == [{"kind": "time_wait", "count": 7, "limit": 5}]


def test_a_deferred_record_reads_whole_as_it_always_did() -> None:
    """Key for key and in order (the JSON report's bytes): items, then context, after the limit."""
    results = SessionResults()
    results.add_local(_record())
    whole = results.records[0]
    violation = whole["violations"][0]
    assert list(violation) == ["kind", "count", "limit", "items", "context"]
    assert violation["items"] == [{"state": "TIME_WAIT", "local": None, "remote": "127.0.0.1:8000", "fd": None,
                                   "origin": "/src/test_x.py:12 in test_burst", "count": 7, "note": None,
                                   "tuples": [["127.0.0.1:40001", "127.0.0.1:8000"]], "file": "test_x.py",
                                   "line": 12}]
    assert violation["context"][0]["state"] == "httpx.Client" and violation["context"][0]["note"] == "1 request each"
    json.dumps(results.document())  # JSON-ready, as before
    assert results.dirty == [whole]  # CI annotations read the whole record
    assert full_record(whole) is whole


def test_a_deferred_record_is_made_whole_once() -> None:
    record = _record()
    assert isinstance(record, Deferred)
    first = full_record(record)
    items = first["violations"][0]["items"]
    assert full_record(record) is first and first["violations"][0]["items"] is items


def test_a_notice_that_names_its_process_is_shown_once_for_all_workers() -> None:
    """Each xdist worker sends its notices; one that names the worker's pid (psutil's errors do) is the same
    notice from every worker, shown once. Notices that differ otherwise are all kept."""
    results = SessionResults()
    off = ("socket checks are off for this session: cannot list /proc/self/fd: [Errno 2] No such file or "
           "directory; and psutil cannot read this process: process PID not found (pid={})")
    for pid in (29550, 29555, 29558):
        results.add_process_health({"notices": [off.format(pid), f"other notice {pid % 2}"]})
    assert results.notices == [off.format(29550), "other notice 0", "other notice 1"]
