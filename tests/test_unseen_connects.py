"""End to end, with the real uvloop: connects made by C code leave the connections and TIME_WAIT counts low, and
the session says so instead of passing zeros off as measured (found running uvicorn's suite: a
new-client-per-request burst under uvloop read ``connections: 0, time_wait: 0`` with no word of why).

uvloop's own ``Loop`` (``uvloop.run``, ``uvloop.new_event_loop``, uvicorn's ``loop="auto"``) is a Python class whose
``create_connection`` and ``create_server`` the plugin wraps (``c_loops.py``): its connections are counted. The C
loop under it, run directly, has no Python method to wrap: it stands here for any C code that connects (a C
library, another C event loop), whose connections stay unseen.
"""

from __future__ import annotations

import json

import pytest

from conftest import dedent

pytest.importorskip("uvloop")

BURST = dedent("""
    import asyncio

    import httpx
    import pytest
    import uvloop


    async def burst(url):
        for _ in range(3):
            async with httpx.AsyncClient() as client:  # a new client (and connection) per request
                assert (await client.get(url)).status_code == 200


    def run_on_c_loop(coro):
        loop = uvloop.loop.Loop()  # uvloop's C loop itself: no Python method of it to wrap
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()


    @pytest.mark.sockhygiene(time_wait=None)
    @pytest.mark.parametrize("loop", ["asyncio", "uvloop", "c-loop"])
    def test_burst(server, loop):
        if loop == "uvloop":
            uvloop.run(burst(server.url))
        elif loop == "c-loop":
            run_on_c_loop(burst(server.url))
        else:
            asyncio.run(burst(server.url))
""")

NOTICE = "notice: some clients had a connection in their pool after a request that no Python socket call was seen " \
         "opening (C code opened it: an event loop such as uvloop, a C library)*"


def test_connects_no_socket_call_made_are_said_to_be_missing_from_the_counts(pytester, run):
    pytester.makepyfile(test_u=BURST)
    path = pytester.path / "r.json"
    result = run(f"--sockhygiene-report={path}", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    tests = {t["nodeid"]: t for t in json.loads(path.read_text())["tests"]}
    assert tests["test_u.py::test_burst[asyncio]"]["counts"]["connections"] == 3  # seen: the socket module's
    assert tests["test_u.py::test_burst[uvloop]"]["counts"]["connections"] == 3  # seen: uvloop.Loop's, wrapped
    assert tests["test_u.py::test_burst[c-loop]"]["counts"]["connections"] == 0  # libuv's, from C: unseen
    result.stdout.fnmatch_lines([NOTICE])
    notices = json.loads(path.read_text())["session"]["notices"]
    assert [n for n in notices if n.startswith("some clients had a connection in their pool")]


def test_no_word_of_it_when_every_connect_was_seen(pytester, run):
    pytester.makepyfile(test_u=BURST)
    result = run("-p", "no:randomly", "-k", "not c-loop")
    result.assert_outcomes(passed=2, deselected=1)
    assert "no Python socket call was seen" not in result.stdout.str()
