"""End to end: a non-blocking connect that is refused (asyncio, anyio and the async clients on them) is no
connection, as a blocking connect that raises never was: not counted, and its client opened none."""

from __future__ import annotations

import json

from conftest import dedent

SUITE = dedent('''
    import asyncio
    import socket

    import httpx
    import pytest

    def dead_port():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now: a connect is refused
        return port

    def test_refused_asyncio_connect():
        async def main():
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection("127.0.0.1", dead_port())
        asyncio.run(main())

    def test_refused_async_client_opened_nothing():
        async def main():
            client = httpx.AsyncClient()
            with pytest.raises(httpx.ConnectError):
                await client.get(f"http://127.0.0.1:{dead_port()}/")
            test_refused_async_client_opened_nothing.kept = client  # never closed, but never connected either
        asyncio.run(main())

    def test_refused_blocking_connect():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", dead_port()))

    def test_connected_asyncio_connect_counts(server):
        async def main():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.close()
            await writer.wait_closed()
        asyncio.run(main())

    def test_async_connection_shut_down_both_ways_counts(server):
        async def main():
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET / HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n")
            writer.write_eof()  # shutdown(SHUT_WR); the server answers and closes: this side is connected no more
            await reader.read()
            writer.close()
            await writer.wait_closed()
        asyncio.run(main())
''')


def test_a_refused_non_blocking_connect_is_no_connection(pytester, run, tmp_path):
    pytester.makepyfile(test_r=SUITE)
    path = tmp_path / "r.json"
    result = run(f"--sockhygiene-report={path}", "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    counts = {t["nodeid"].split("::")[1]: t["counts"] for t in json.loads(path.read_text())["tests"]}
    assert counts["test_refused_asyncio_connect"]["connections"] == 0
    assert counts["test_refused_blocking_connect"]["connections"] == 0
    assert counts["test_refused_async_client_opened_nothing"]["connections"] == 0
    assert counts["test_refused_async_client_opened_nothing"]["clients"] == 0
    assert counts["test_refused_async_client_opened_nothing"]["unused_clients"] == 1
    assert counts["test_connected_asyncio_connect_counts"]["connections"] == 1
    assert counts["test_async_connection_shut_down_both_ways_counts"]["connections"] == 1
