"""Fixtures of the demo suite: the service under test runs on loopback for the whole session.

These fixtures are the GOOD pattern for shared network resources. They are session-scoped, so they are set up
once and torn down when the session ends; everything they open - the server's listening socket, the
connections it accepts, the pool of the shared client - belongs to the fixture, never to the test that
happened to trigger its setup.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from pytest_sockhygiene.testing import LoopbackHTTPServer, serve_http


@pytest.fixture(scope="session")
def api() -> Iterator[LoopbackHTTPServer]:
    """The user API under test: a real HTTP/1.1 server with keep-alive, shut down at the end of the session."""
    with serve_http(keep_alive=5.0) as server:
        yield server


@pytest.fixture(scope="session")
def api_client(api: LoopbackHTTPServer) -> Iterator[httpx.Client]:
    """One client for the whole session: its pooled keep-alive connection is reused by every test."""
    with httpx.Client(base_url=api.url) as client:
        yield client


@pytest.fixture(scope="session")
def impatient_upstream() -> Iterator[LoopbackHTTPServer]:
    """An upstream that closes idle keep-alive connections after 0.1 s (nginx's default is 75 s; some proxies
    use 1 s), far sooner than httpx's keepalive_expiry of 5 s."""
    with serve_http(keep_alive=0.1) as server:
        yield server


@pytest.fixture
def anyio_backend() -> str:
    """Run the ``@pytest.mark.anyio`` tests on asyncio only."""
    return "asyncio"
