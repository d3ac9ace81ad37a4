"""Unused clients are not connection leaks (issue 11 section 1): connects are attributed to the client whose
request opened them, and only an unclosed client that opened a real connection counts under ``clients``; one
that never did counts under ``unused_clients`` (unlimited by default). Real server, real client libraries."""

from __future__ import annotations

import asyncio
import http.client
from typing import Any, List

import pytest

from conftest import ANYIO_BACKEND, dedent, errors_of

httpx = pytest.importorskip("httpx")
requests = pytest.importorskip("requests")


# -- in process: which client opened which connection ------------------------------------------------------------


def test_connects_are_attributed_to_the_client_whose_request_opened_them():
    """``SocketEvent.client`` is the record of the outermost tracked client whose request made the connect
    (also from anyio's child tasks); raw connections have none; the record counts its connects."""
    from pytest_sockhygiene.clients import ClientRegistry
    from pytest_sockhygiene.events import EventSink, Recorder
    from pytest_sockhygiene.testing import serve_http
    from pytest_sockhygiene.trackers.httpx import HttpxTracker
    from pytest_sockhygiene.trackers.requests import RequestsTracker
    from pytest_sockhygiene.trackers.urllib3 import Urllib3Tracker

    errors: List[BaseException] = []
    recorder = Recorder(lambda fd, local, remote: (fd, local, remote), errors.append)
    registry = ClientRegistry(lambda: None, lambda: recorder.sinks)
    trackers: List[Any] = [HttpxTracker("httpx"), RequestsTracker(), Urllib3Tracker()]
    for tracker in trackers:
        tracker.pytest_sockhygiene_install_tracker(registry=registry)
    with serve_http(keep_alive=5.0) as server:
        recorder.install()
        sink = EventSink()
        recorder.add_sink(sink)
        try:
            session = requests.Session()
            for _ in range(2):  # the server ends each connection: the session's pool opens two
                assert session.get(server.url + "/close").status_code == 200
            client = httpx.Client()
            for _ in range(3):  # keep-alive: one connection for three requests
                assert client.get(server.url).status_code == 200

            async def use_async() -> None:
                async with httpx.AsyncClient() as aclient:  # connects inside anyio's connect_tcp child tasks
                    assert (await aclient.get(server.url)).status_code == 200

            asyncio.run(use_async())
            raw = http.client.HTTPConnection(*server.server_address[:2])
            raw.request("GET", "/")
            raw.getresponse().read()
            raw.close()
        finally:
            recorder.remove_sink(sink)
            recorder.uninstall()
            for tracker in trackers:
                tracker.pytest_sockhygiene_uninstall_tracker(registry=registry)
        session.close()
        client.close()
    assert not errors
    records = {r.kind: r for r in registry.records() if not r.shared}
    by_client = [(ev.client.kind if ev.client is not None else None) for ev in sink.events if ev.kind == "connect"]
    assert by_client == ["requests.Session", "requests.Session", "httpx.Client", "httpx.AsyncClient", None]
    assert [records[k].connections for k in ("requests.Session", "httpx.Client", "httpx.AsyncClient")] == [2, 1, 1]
    assert records["requests.Session"].requests == 2 and records["httpx.Client"].requests == 3
