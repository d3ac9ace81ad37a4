"""A machine without /proc (a container or sandbox that does not mount it): one notice, the run goes on.

A missing /proc cannot be caused for real inside this suite (we cannot unmount it for one process), so each test
injects the fault in the inner run's conftest, in a subprocess so that it dies with that process:
``linux._FD_DIR`` (the directory the linux backend lists, pointed at a missing one, as the fault tests of
test_fixture_and_faults.py do) and ``psutil.PROCFS_PATH``, psutil's own documented setting for where /proc is
mounted, pointed at a missing directory: psutil then fails exactly as it does without /proc (NoSuchProcess for
this very process).
"""

from __future__ import annotations

import sys

import pytest

from conftest import dedent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the /proc fault is Linux's")

NO_PROC = dedent("""
    import psutil
    from pytest_sockhygiene.table import linux

    linux._FD_DIR = "/nonexistent/proc/self/fd"
    psutil.PROCFS_PATH = "/nonexistent/proc"
""")

TESTS = dedent("""
    import pytest

    def test_plain():
        pass

    def test_fixture_says_why(sockhygiene):
        with pytest.raises(RuntimeError, match="sockhygiene cannot read the socket table here: .*nonexistent/proc"):
            sockhygiene.snapshot()
""")


@pytest.mark.parametrize("backend", ["auto", "psutil", "linux"])
def test_no_proc_gives_one_notice_and_names_no_backend(pytester: pytest.Pytester, backend: str) -> None:
    pytester.makeconftest(NO_PROC)
    pytester.makepyfile(test_n=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sockhygiene",
                                           f"--sockhygiene-backend={backend}")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([
        "sockhygiene: mode=enforce, backend=none (socket checks are off for this session: see the notice at the end)",
    ])
    assert out.count("notice: socket checks are off for this session: ") == 1, out
    # nothing was checked: the summary says so and why, never "all clean"
    result.stdout.fnmatch_lines(["0 tests checked (socket checks are off for this session: see the notice below)"])
    assert "all clean" not in out, out
    assert "plugin problem" not in out and "Traceback" not in out, out
    if backend in ("auto", "psutil"):
        result.stdout.fnmatch_lines(["notice: *psutil cannot read this process (psutil reads /nonexistent/proc here)*"])
    if backend in ("auto", "linux"):
        result.stdout.fnmatch_lines(["notice: *cannot list /nonexistent/proc/self/fd*"])


@pytest.mark.parametrize(("fd_dir", "why"), [
    ("/nonexistent/proc/self/fd", "cannot list /nonexistent/proc/self/fd: *"),
    ("empty-fd-dir", "*empty-fd-dir lists no file descriptors, not even the one its listing opens: it is not this "
                     "process's fd table"),
])
def test_an_unusable_proc_self_fd_falls_back_to_psutil_and_says_why(pytester: pytest.Pytester, fd_dir: str,
                                                                     why: str) -> None:
    """Only /proc/self/fd unusable (psutil still reads the rest): ``auto`` uses psutil, the header names it, the
    one notice says why, and a leak is still caught. Missing, or an empty directory (a sandbox that masks it with
    one; a real empty directory here): a real listing always shows the fd it lists through, so an empty one is no
    fd table - read as one, every held socket passed unseen."""
    if not fd_dir.startswith("/"):
        fd_dir = str(pytester.mkdir(fd_dir))
    pytester.makeconftest(f"from pytest_sockhygiene.table import linux\nlinux._FD_DIR = {fd_dir!r}\n")
    pytester.makepyfile(test_n=dedent("""
        import socket
        KEEP = []

        def test_leaves_a_listener():
            KEEP.append(socket.create_server(("127.0.0.1", 0)))
    """))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--sockhygiene", "-o", "sockhygiene_settle=0")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines([
        "sockhygiene: mode=enforce, backend=psutil",
        "*listen: 1 > limit 0*",
        f"notice: the linux backend is unavailable here ({why}); using psutil (slower*",
    ])
    assert result.stdout.str().count("notice: the linux backend is unavailable here") == 1
