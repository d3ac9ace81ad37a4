"""The loopback test server's own promises (``pytest_sockhygiene.testing``), against real sockets."""

from __future__ import annotations

import socket

from pytest_sockhygiene.testing import serve_http


def test_wait_accepted_sees_the_accept_of_that_connection_only():
    with serve_http() as server:
        client = socket.create_connection((server.host, server.port))
        try:
            assert server.wait_accepted(client)
        finally:
            client.close()
        # a connection to another listener, which never accepts it: not this server's, however long one waits
        with socket.socket() as other:
            other.bind(("127.0.0.1", 0))
            other.listen()
            stranger = socket.create_connection(other.getsockname())
            try:
                assert not server.wait_accepted(stranger, timeout=0.1)
            finally:
                stranger.close()
