"""Clean tests: every client and socket is closed, or belongs to a fixture of broader scope. All of them pass."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from pytest_sockhygiene import SockHygiene
from pytest_sockhygiene.testing import LoopbackHTTPServer


def fetch_user(client: httpx.Client, user_id: int) -> str:
    response = client.get(f"/users/{user_id}")
    response.raise_for_status()
    return response.text


def test_good_client_closed_by_with(api: LoopbackHTTPServer) -> None:
    """A client used in a `with` block is closed on the way out, with its connection."""
    with httpx.Client(base_url=api.url) as client:
        assert fetch_user(client, 1) == "ok\n"
        assert fetch_user(client, 2) == "ok\n"


def test_good_shared_client_fetches_a_user(api_client: httpx.Client) -> None:
    """The session-scoped client's pooled connection belongs to the fixture, not to this test."""
    assert fetch_user(api_client, 1) == "ok\n"


def test_good_shared_client_updates_a_user(api_client: httpx.Client) -> None:
    """The same pooled connection is reused: no new connection, nothing left behind."""
    response = api_client.post("/users/1/activate")
    assert response.status_code == 200


def test_good_shared_client_lists_users(api_client: httpx.Client) -> None:
    """Many requests over the shared client still cost no new connection."""
    for page in range(1, 6):
        assert api_client.get("/users", params={"page": page}).status_code == 200


@pytest.mark.anyio
async def test_good_async_client_closed_by_async_with(api: LoopbackHTTPServer) -> None:
    """An AsyncClient used in an `async with` block is closed on the way out."""
    async with httpx.AsyncClient(base_url=api.url) as client:
        first = await client.get("/users/1")
        second = await client.get("/users/2")
    assert (first.status_code, second.status_code) == (200, 200)


@pytest.fixture
def raw_connection(api: LoopbackHTTPServer) -> Iterator[socket.socket]:
    """A raw TCP connection to the API, closed in the fixture's teardown."""
    sock = socket.create_connection((api.host, api.port), timeout=5)
    yield sock
    sock.close()


def http_get(sock: socket.socket, path: str) -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
    data = b""
    while not data.endswith(b"\r\n\r\nok\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_good_raw_socket_closed_by_fixture_teardown(raw_connection: socket.socket) -> None:
    """The check runs after fixture teardown, so a socket a function fixture closes is never a leak."""
    assert http_get(raw_connection, "/health").startswith(b"HTTP/1.1 200")


def test_good_measure_counts_one_pooled_connection(api: LoopbackHTTPServer, sockhygiene: SockHygiene) -> None:
    """`sockhygiene.measure()` asserts on one block: three requests, one pooled connection, nothing left open."""
    with sockhygiene.measure() as m, httpx.Client(base_url=api.url) as client:
        for user_id in (1, 2, 3):
            fetch_user(client, user_id)
    assert m.established == 0
    assert m.connections == 1
