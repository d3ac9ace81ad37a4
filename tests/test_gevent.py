"""gevent's monkey-patching, for real: what the plugin can still see, and one notice for what it cannot.

``gevent.monkey.patch_all()`` puts gevent's own class in place of ``socket.socket``: no subclass of the standard
class, it calls ``_socket.socket``'s C methods directly, so the plugin's socket hooks never see its sockets
(found running geventhttpclient's suite, where every count read 0 with no word of why). ``patch_thread()`` makes
``threading.get_ident`` a greenlet's id, which is not the thread id the hooks ask. Each run is a subprocess:
patching the pytester process would patch this suite's own.
"""

from __future__ import annotations

import json

import pytest

from conftest import dedent, errors_of

pytest.importorskip("gevent")

CONFTEST = dedent('''
    import os

    from gevent import monkey

    if os.environ["PATCH"] == "all":
        monkey.patch_all()
    else:
        monkey.patch_thread()

    import socket
    import subprocess
    import sys
    import time

    import pytest
    import requests


    @pytest.fixture(scope="session")
    def server():
        """A real HTTP/1.1 server in a child process (what it does is no test's); ready once it accepts."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve = ("import http.server as h, sys; h.SimpleHTTPRequestHandler.protocol_version = 'HTTP/1.1'; "
                 "h.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), h.SimpleHTTPRequestHandler).serve_forever()")
        # (HTTP/1.1, kept alive: the client closes first; http.server's --protocol is Python 3.11+)
        proc = subprocess.Popen([sys.executable, "-c", serve, str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server never came up"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
        proc.terminate()
        proc.wait()


    @pytest.fixture(scope="session")
    def api(server):
        """A session's client, warmed up with a burst of its fixture's own: none of it is a test's."""
        for _ in range(8):
            requests.get(server).close()
        with requests.Session() as s:
            yield s
''')

TESTS = dedent('''
    import socket
    import urllib.parse

    import pytest
    import requests

    KEEP = []

    def test_uses_the_session_client(api, server):
        assert api.get(server).status_code == 200

    def test_a_burst(server):
        for _ in range(8):
            requests.get(server).close()

    @pytest.mark.sockhygiene(connections=2)
    def test_over_a_budget(server):
        url = urllib.parse.urlsplit(server)
        for _ in range(4):
            socket.create_connection((url.hostname, url.port)).close()

    def test_leaves_a_socket_open(server):
        url = urllib.parse.urlsplit(server)
        KEEP.append(socket.create_connection((url.hostname, url.port)))
''')


def _run(pytester: pytest.Pytester, run, monkeypatch: pytest.MonkeyPatch, patch: str) -> tuple[object, dict]:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_g=TESTS)
    monkeypatch.setenv("PATCH", patch)
    # (pytest-socket, installed here, writes the standard class back into socket.socket at every teardown)
    result = run("-p", "no:randomly", "-p", "no:socket", "--sockhygiene-report=r.json", "-W",
                 "ignore::DeprecationWarning", subprocess=True)
    report = json.loads((pytester.path / "r.json").read_text())
    return result, {t["nodeid"].split("::")[1]: t for t in report["tests"]}


def test_under_patch_all_the_counts_are_unknown_and_one_notice_says_why(pytester, run, monkeypatch):
    """Sockets made through gevent's class bypass the hooks: a burst and a budget cannot be measured, so their
    counts are null (not a measured-looking 0) and a notice names the class; a socket left open is still found,
    and the session fixture's client is still the fixture's."""
    result, tests = _run(pytester, run, monkeypatch, "all")
    assert errors_of(result) == ["test_g.py::test_leaves_a_socket_open"]
    result.stdout.fnmatch_lines(["*established: 1 > limit 0*"])
    for name in ("test_a_burst", "test_over_a_budget"):
        assert tests[name]["counts"]["connections"] is None, tests[name]
        assert tests[name]["counts"]["time_wait"] is None, tests[name]
    assert tests["test_uses_the_session_client"]["clean"], tests["test_uses_the_session_client"]
    out = result.stdout.str()
    assert out.count("socket.socket was replaced by gevent._socket3.socket") == 1, out
    result.stdout.fnmatch_lines(["notice: socket.socket was replaced by gevent._socket3.socket (gevent's or "
                                 "eventlet's monkey-patching), whose sockets bypass the plugin's socket hooks*"])
    assert "C code opened it" not in out  # (not the uvloop notice: the reason is said)
    # the session's figures are unknown too, not a bare 0 (locust's suite)
    result.stdout.fnmatch_lines(["session health: connections opened and peak TIME_WAIT unknown (no test's were "
                                 "measured: see the notice); peak open file descriptors *"])
    # and the JSON report's, null as its documentation says, not a measured-looking 0 (geventhttpclient's suite)
    session = json.loads((pytester.path / "r.json").read_text())["session"]
    assert session["connections_opened"] is None and session["peak_time_wait"] is None, session


def test_under_patch_thread_a_session_fixture_still_owns_what_it_made(pytester, run, monkeypatch):
    """gevent's ``threading.get_ident`` is a greenlet's id: the fixture's thread must be asked the way the hooks
    ask, or nothing a session fixture makes is its own (its client was the first test's unclosed client, its
    warm-up burst the first test's TIME_WAIT). The sockets are the standard ones: everything is measured."""
    result, tests = _run(pytester, run, monkeypatch, "thread")
    assert sorted(errors_of(result)) == ["test_g.py::test_a_burst", "test_g.py::test_leaves_a_socket_open",
                                         "test_g.py::test_over_a_budget"]
    first = tests["test_uses_the_session_client"]
    assert first["clean"] and first["counts"]["time_wait"] == 0 and first["counts"]["clients"] == 0, first
    assert tests["test_over_a_budget"]["counts"]["connections"] == 4
    assert "socket.socket was replaced" not in result.stdout.str()


FD_REUSE_CONFTEST = dedent('''
    from gevent import monkey

    monkey.patch_all()

    import socket

    import pytest


    @pytest.fixture(scope="session")
    def listener():
        """A loopback listener nobody accepts from: the kernel completes each handshake into its backlog."""
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield s.getsockname()
        s.close()
''')

FD_REUSE_TESTS = dedent('''
    import socket

    HELD = []

    def test_1_leaks(listener):
        HELD.append(socket.create_connection(listener))

    def test_2_swaps(listener):
        old = HELD.pop()
        number = old.fileno()
        old.close()
        new = socket.create_connection(listener)  # the number just freed: a new leak where the old one was
        assert new.fileno() == number
        HELD.append(new)

    def test_3_touches_no_socket(listener):
        pass

    def test_4_opens_a_file(listener):
        HELD.append(open(__file__))
''')


def test_under_patch_all_a_socket_opened_on_a_closed_ones_number_is_the_tests_that_opened_it(pytester, run):
    """gevent's sockets bypass the hooks, so "no socket call seen and the same fd numbers open" does not mean the
    same sockets: a test that closed a leaked connection and opened another that took its number was clean, and
    the new socket was blamed on a later test that only opened a file (geventhttpclient's suite). Every look is a
    full one while gevent's sockets can be made."""
    pytester.makeconftest(FD_REUSE_CONFTEST)
    pytester.makepyfile(test_reuse=FD_REUSE_TESTS)
    result = run("-p", "no:randomly", "-p", "no:socket", "-W", "ignore::DeprecationWarning", subprocess=True)
    assert errors_of(result) == ["test_reuse.py::test_1_leaks", "test_reuse.py::test_2_swaps"], result.stdout.str()


def test_under_patch_all_a_close_wait_socket_no_hook_saw_made_is_not_called_a_response(pytester, run):
    """The test's own server never reads a request and keeps its accepted socket; the client closes first. Under
    gevent no connect or accept is seen, so nothing says this is the server's end: the report must not call the
    unread request "a response the server sent", nor tell the test to read a response (geventhttpclient's suite)."""
    pytester.makeconftest("from gevent import monkey\nmonkey.patch_all()\n")
    pytester.makepyfile(test_srv=dedent('''
        import socket, threading

        import pytest

        HELD = []

        def test_server_keeps_an_unread_request():
            listener = socket.create_server(("127.0.0.1", 0))
            handler = threading.Thread(target=lambda: HELD.append(listener.accept()[0]))
            handler.start()
            client = socket.create_connection(listener.getsockname())
            client.sendall(b"GET / HTTP/1.1\\r\\nHost: 127.0.0.1\\r\\nUser-Agent: a-client-of-this-test\\r\\n\\r\\n")
            client.settimeout(0.1)
            with pytest.raises(socket.timeout):
                client.recv(100)  # no answer comes
            client.close()  # the client ends first: the server's end is left in CLOSE_WAIT
            handler.join()
            listener.close()
    '''))
    result = run("-p", "no:randomly", "-p", "no:socket", "-W", "ignore::DeprecationWarning", subprocess=True)
    assert errors_of(result) == ["test_srv.py::test_server_keeps_an_unread_request"], result.stdout.str()
    block = result.stdout.str()
    result.stdout.fnmatch_lines([
        "*close_wait: 1 > limit 0*",
        "*CLOSE_WAIT * (no connect() or accept() of it was seen, so which end of the connection it is is not known; "
        "* byte(s) its peer sent still wait unread)",
        "*fix: the other end closed first and this process kept its end of the connection open*",
    ])
    assert "a response never read" not in block and "the server answered and closed" not in block
