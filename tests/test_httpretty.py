"""httpretty, for real: a fake ``socket.socket`` that makes its real connections through the standard class.

``httpretty.enable()`` puts its own ``fakesock.socket`` in place of ``socket.socket``: no subclass of the standard
class, so it was read as gevent's or eventlet's, whose sockets bypass the hooks. But httpretty keeps the standard
class (``httpretty.core.old_socket``) and makes every real connection through it, so the hooks see them all. A test
that left httpretty enabled (httpretty's own suite has one) made every later test's counts unknown, with a notice
blaming gevent, while the violations of those same tests were counted right (found running httpretty's suite).
"""

from __future__ import annotations

import json

import pytest

from conftest import dedent, errors_of

pytest.importorskip("httpretty")

LEFT_ENABLED = dedent('''
    import socket

    import httpretty
    import pytest


    def test_a_leaves_httpretty_enabled():
        httpretty.enable(allow_net_connect=True)  # never disabled: the next tests run under its fake class


    @pytest.mark.sockhygiene(connections=1)
    def test_b_three_connects(server):
        assert socket.socket is httpretty.core.fakesock.socket
        for _ in range(3):
            socket.create_connection((server.host, server.port)).close()  # a real connection, through old_socket


    def test_c_one_connect(server):
        socket.create_connection((server.host, server.port)).close()


    def test_z_disable():
        httpretty.disable()
''')


def test_httpretty_left_enabled_leaves_every_real_connection_counted(pytester, run):
    """Under httpretty's fake class the real connections are counted as without it: a budget is broken with its
    count, a clean test reads its one connection, nothing reads unknown, and no notice blames gevent."""
    pytester.makepyfile(test_h=LEFT_ENABLED)
    # (pytest-socket, in the test extra, writes the standard class back at every teardown: not with it here)
    result = run("-p", "no:randomly", "-p", "no:socket", "--sockhygiene-report=r.json", subprocess=True)
    assert errors_of(result) == ["test_h.py::test_b_three_connects"]
    result.stdout.fnmatch_lines(["*connections: 3 > limit 1*"])
    out = result.stdout.str()
    assert "gevent" not in out and "unknown" not in out, out
    records = {t["nodeid"]: t for t in json.loads((pytester.path / "r.json").read_text())["tests"]}
    assert records["test_h.py::test_c_one_connect"]["counts"]["connections"] == 1, records
    assert records["test_h.py::test_b_three_connects"]["counts"]["connections"] == 3, records
