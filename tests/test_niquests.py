"""niquests and urllib3-future end to end: real clients, a real loopback server, real kernel rows.

niquests keeps requests' API over urllib3-future, a fork of urllib3 that installs itself under the name ``urllib3``
(its ``.pth`` file puts it over a real urllib3 at every interpreter start, so a real ``requests`` then runs on it
too). It cannot share a venv with the README command's tests, which run on the real urllib3: these tests run in
the matrix session that installs niquests (``noxfile.py``), and skip elsewhere.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import dedent, errors_of, failure_block

pytestmark = pytest.mark.skipif(importlib.util.find_spec("niquests") is None,
                                reason="niquests is installed only in its matrix session (noxfile.py)")


def _urllib3_is_future() -> bool:
    return importlib.util.find_spec("urllib3.util.traffic_police") is not None


SUITE = dedent('''
    import niquests
    import pytest
    import requests
    import urllib3

    KEEP = []


    @pytest.fixture(scope="session")
    def shared():
        with niquests.Session() as s:
            yield s


    def test_shared_session(shared, server):
        assert shared.get(server.url).status_code == 200  # its pool starts its idle watcher thread now


    def test_session_never_closed(server):
        s = niquests.Session()
        assert s.get(server.url).status_code == 200
        KEEP.append(s)


    def test_session_closed(server):
        with niquests.Session() as s:
            assert s.get(server.url).status_code == 200
            assert s.get(server.url).status_code == 200


    def test_get_per_call(server):
        for _ in range(8):
            assert niquests.get(server.url).status_code == 200


    def test_pool_manager_never_cleared(server):
        pm = urllib3.PoolManager()
        assert pm.request("GET", server.url).data == b"ok\\n"  # read in full: the connection is idle in its pool
        KEEP.append(pm)


    def test_requests_session_never_closed(server):
        s = requests.Session()
        assert s.get(server.url).text == "ok\\n"
        KEEP.append(s)
''')


def line_of(text: str) -> int:
    return next(i for i, line in enumerate(SUITE.splitlines(), 1) if text in line)


def test_a_niquests_session_is_a_client_and_its_idle_connection_is_in_its_pool(pytester, run):
    """A ``niquests.Session`` read as the ``urllib3.PoolManager`` of one of its three adapters, told to call
    ``clear()``, with the other two as unused clients; and, urllib3-future keeping a pool's connections in a
    ``TrafficPolice`` rather than a queue, every idle pooled connection - a real ``requests.Session``'s too - read
    "held by a response not yet read" (found running niquests 3.21's suite for issue 12). A session fixture's
    Session whose pool starts its idle-connection watcher thread during a test: the thread is the fixture's."""
    pytester.makepyfile(test_n=SUITE)
    result = run("-p", "no:randomly", "--sockhygiene-report=r.json")
    assert errors_of(result) == ["test_n.py::test_get_per_call", "test_n.py::test_pool_manager_never_cleared",
                                 "test_n.py::test_requests_session_never_closed",
                                 "test_n.py::test_session_never_closed"]
    out = result.stdout.str()
    assert "unused" not in out.split("socket hygiene")[-1], out  # no PoolManager of a session's adapters counted
    leaked = failure_block(result, "test_n.py::test_session_never_closed")
    made = line_of("s = niquests.Session()")
    assert f"niquests.Session, created at test_n.py:{made} in test_session_never_closed (still open)" in leaked, leaked
    assert f"(in the pool of niquests.Session created at test_n.py:{made} in test_session_never_closed)" in leaked, \
        leaked
    assert "PoolManager" not in leaked and "clear()" not in leaked, leaked
    per_call = failure_block(result, "test_n.py::test_get_per_call")
    assert (f"8 niquests.Session created inside niquests.get(), called at test_n.py:{line_of('niquests.get(')} in "
            "test_get_per_call (1 request each)") in per_call, per_call
    if _urllib3_is_future():  # (niquests may also run on a urllib3-future installed beside the real urllib3)
        for name, kind, line in (("test_pool_manager_never_cleared", "urllib3.PoolManager", line_of("PoolManager()")),
                                 ("test_requests_session_never_closed", "requests.Session",
                                  line_of("requests.Session()"))):
            block = failure_block(result, f"test_n.py::{name}")
            assert f"(in the pool of {kind} created at test_n.py:{line} in {name})" in block, block
            assert "not yet read" not in block, block
    report = json.loads((pytester.path / "r.json").read_text())
    tests = {t["nodeid"].split("::")[1]: t["counts"] for t in report["tests"]}
    assert tests["test_session_never_closed"]["clients"] == 1
    # the shared session's pool started its idle-connection watcher in the test: the fixture's thread, like the pool
    shared = next(t for t in report["tests"] if t["nodeid"].endswith("::test_shared_session"))
    assert shared["clean"] and not shared.get("threads"), shared
    assert tests["test_session_closed"]["clients"] == 0 and tests["test_session_closed"]["unused_clients"] == 0
