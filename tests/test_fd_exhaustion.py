"""A test that runs the process out of file descriptors is still judged (issue 12).

The inner test lowers ``RLIMIT_NOFILE``'s soft limit to 64 and opens loopback sockets until the kernel refuses
one (about 50: a pytest process starts with 10-20 fds), and keeps them. The check then
runs with no fd free: it must not need one, must report the test's leaks as its violation, say that the process
ran out, and the session health must show the limit that was in force. Run in a subprocess: it changes the
process's limits.
"""

from __future__ import annotations

import re
import sys

import pytest

from conftest import dedent, errors_of

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_NOFILE is POSIX")

EXHAUST = dedent("""
    import errno, resource, socket
    import pytest

    KEEP = []

    @pytest.fixture(scope="module")
    def restores_the_limit():
        # module scope: the limit is still lowered, and the sockets still held, when the test is judged
        limits = resource.getrlimit(resource.RLIMIT_NOFILE)
        yield
        for s in KEEP:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, limits)

    @pytest.fixture(scope="module")
    def waiting_server():
        # a server thread blocked in accept(): the kernel reserves the fd number accept() will return, so it is
        # taken (EMFILE) yet no listing of /proc/self/fd shows it - "in use" must count it
        import threading
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        def wait():
            try:
                srv.accept()[0].close()
            except OSError:  # an accept retried (EINTR) while no fd is free: EMFILE, nothing reserved any more
                pass

        t = threading.Thread(target=wait, daemon=True)
        t.start()
        yield
        socket.create_connection(srv.getsockname()).close()
        t.join(5)
        srv.close()

    def test_runs_out_of_fds(waiting_server, restores_the_limit):
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        KEEP.append(listener)
        refused = None
        while len(KEEP) < 64 and refused is None:
            try:
                KEEP.append(socket.create_connection(listener.getsockname()))
            except OSError as e:
                refused = e
        assert refused is not None and refused.errno == errno.EMFILE, (len(KEEP), refused)

    def test_after(restores_the_limit):
        pass
""")

LATER = dedent("""
    import socket

    def test_later_leak():
        test_later_leak.keep = socket.socket()
        test_later_leak.keep.bind(("127.0.0.1", 0))
        test_later_leak.keep.listen()
""")


def test_a_test_that_runs_out_of_fds_is_judged(pytester, run):
    pytester.makepyfile(test_fds=EXHAUST, test_later=LATER)
    result = run("-p", "no:faulthandler", subprocess=True)
    out = result.stdout.str()
    assert "plugin problem" not in out, out
    assert "Too many open files" not in out, out
    assert errors_of(result) == ["test_fds.py::test_runs_out_of_fds", "test_later.py::test_later_leak"], out
    result.assert_outcomes(passed=3, errors=2)
    block = out[out.index("test_fds.py::test_runs_out_of_fds broke"):]
    block = block[:block.index("test_later.py::test_later_leak broke")]
    # in use: at least the limit (fds opened before the limit was lowered - by pytest, by other plugins such as
    # pytest-rerunfailures' status server - stay open above it)
    note = re.compile(r"the process ran out of file descriptors \((\d+) in use of a limit of 64\)")
    established = block[block.index("established: "):block.index("listen: 1 > limit 0")]
    in_use = [int(n) for n in note.findall(established)]
    assert len(in_use) == 20 and min(in_use) >= 64, established  # the first 20 items are shown
    assert re.search(r"ESTABLISHED 127.0.0.1:\d+ -> 127.0.0.1:\d+ fd=\d+, opened at test_fds.py:\d+ in "
                     r"test_runs_out_of_fds \(" + note.pattern + r"\)", established), established
    listen = block[block.index("listen: 1 > limit 0"):]
    assert "LISTEN 127.0.0.1:" in listen and note.search(listen), listen
    # the checks after it run as before
    result.stdout.fnmatch_lines(["*test_later_leak broke*", "*listen: 1 > limit 0*"])
    peak = re.search(r"session health:.*peak open file descriptors (\d+) of 64 \(\d+\.\d%\)", out)
    assert peak and int(peak.group(1)) >= 64, out
    later = out[out.index("test_later.py::test_later_leak broke"):]
    assert "ran out of file descriptors" not in later.split("fix:")[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the linux backend's look")
def test_the_look_without_a_new_fd_sees_what_a_listing_sees():
    """``probe_fds`` (fstat of every number, no fd needed) gives what the listing gives, sockets and all, with the
    kernel's count to stop at and without it; the watch's count is the listing's."""
    import os
    import socket

    from pytest_sockhygiene.table.fdwatch import FdWatch
    from pytest_sockhygiene.table.linux import open_fds, probe_fds

    with socket.socket() as a, socket.socket() as b:
        watch = FdWatch.open(lambda: open_fds(os.listdir("/proc/self/fd"))[1])  # None before Linux 6.2
        try:
            listed = open_fds(os.listdir("/proc/self/fd"))
            assert probe_fds() == listed
            assert {a.fileno(), b.fileno()} <= set(listed[0].values())
            if watch is not None:
                assert watch.count() == len(listed[1])
                assert probe_fds(watch.count()) == listed
        finally:
            if watch is not None:
                watch.close()
