"""End to end: modes, ini keys, markers at three levels, bad input, and how the plugin is switched off."""

from __future__ import annotations

import pytest

from conftest import dedent, errors_of

LEAK_ONE = dedent("""
    import socket
    KEEP = []

    def leak(server, n=1):
        for _ in range(n):
            KEEP.append(socket.create_connection((server.host, server.port)))
""")


def test_markers_merge_module_class_function_closest_wins(pytester, run):
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_m=dedent("""
        import pytest
        from helpers import leak
        pytestmark = pytest.mark.sockhygiene(established=2, listen=0)

        def test_module_allows_two(server):
            leak(server, 2)

        def test_module_refuses_three(server):
            leak(server, 3)

        @pytest.mark.sockhygiene(established=1)
        class TestStricter:
            def test_class_refuses_two(self, server):
                leak(server, 2)

            @pytest.mark.sockhygiene(established=5)
            def test_function_allows_five(self, server):
                leak(server, 5)

            @pytest.mark.sockhygiene(enabled=False)
            def test_disabled(self, server):
                leak(server, 4)

        def test_last(server):
            pass
    """))
    result = run()
    assert errors_of(result) == ["test_m.py::TestStricter::test_class_refuses_two",
                                 "test_m.py::test_module_refuses_three"]
    result.stdout.fnmatch_lines(["*established: 3 > limit 2*", "*established: 2 > limit 1*"])


def test_ini_limits_and_ignore(pytester, run):
    pytester.makeini(dedent("""
        [pytest]
        sockhygiene_established = 1
        sockhygiene_ignore =
            *:1
    """))
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_i=dedent("""
        import pytest
        from helpers import leak

        def test_one_allowed_by_ini(server):
            leak(server, 1)

        def test_two_refused(server):
            leak(server, 2)

        @pytest.mark.sockhygiene(ignore=["127.0.0.1:*"])
        def test_marker_ignore_adds_to_ini(server):
            leak(server, 3)

        def test_last(server):
            pass
    """))
    result = run()
    assert errors_of(result) == ["test_i.py::test_two_refused"]


def test_ini_mode_and_cli_beats_ini(pytester, run):
    pytester.makeini("[pytest]\nsockhygiene = warn\n")
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_w=dedent("""
        from helpers import leak
        def test_leak(server):
            leak(server)
        def test_last(server):
            pass
    """))
    warned = run(mode="")
    warned.assert_outcomes(passed=2, warnings=1)
    warned.stdout.fnmatch_lines(["*SockHygieneWarning: sockhygiene: test_w.py::test_leak broke its socket limits*"])
    enforced = run(mode="enforce")
    enforced.assert_outcomes(passed=2, errors=1)


def test_warn_mode_never_fails(pytester, run):
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_w=dedent("""
        from helpers import leak
        def test_a(server):
            leak(server)
        def test_b(server):
            leak(server, 2)
        def test_last(server):
            pass
    """))
    result = run(mode="warn")
    result.assert_outcomes(passed=3, warnings=2)
    assert result.ret == 0


def test_off_mode_and_disabled_plugin_do_nothing(pytester, run):
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_o=dedent("""
        import socket
        from helpers import leak
        def test_leak(server):
            leak(server)
            # off: not even a hook installed (pytest-socket, in the test extra, may have written the C method
            # into the class's dict: what matters is that no wrapper of this plugin is there)
            assert not [n for n, f in vars(socket.socket).items()
                        if getattr(f, "__module__", "") == "pytest_sockhygiene.events"]
    """))
    run(mode="off").assert_outcomes(passed=1)
    pytester.runpytest("-p", "no:cacheprovider", "-p", "no:sockhygiene").assert_outcomes(passed=1)
    run(mode="").assert_outcomes(passed=1)  # the default is off


def test_bare_flag_before_a_path_means_enforce(pytester, backend):
    pytester.makeconftest("")
    pytester.makepyfile(test_p=dedent("""
        import socket
        KEEP = []
        def test_listener():
            s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); KEEP.append(s)
    """))
    result = pytester.runpytest("-p", "no:cacheprovider", f"--sockhygiene-backend={backend}", "--sockhygiene",
                                "test_p.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*sockhygiene: mode=enforce*"])


@pytest.mark.parametrize(
    "marker, message",
    [
        ("estabished=1", "unknown limit 'estabished' (did you mean 'established'?)"),
        ("established=-1", "limit 'established' must be a non-negative integer or None, got -1"),
        ("established=1.5", "limit 'established' must be a non-negative integer or None, got 1.5"),
        ("established='2'", "limit 'established' must be a non-negative integer or None, got '2'"),
        ("close_wait=True", "limit 'close_wait' must be a non-negative integer or None, got True"),
        ("settle=-0.1", "'settle' must be a number of seconds >= 0, got -0.1"),
        ("settle='soon'", "'settle' must be a number of seconds >= 0, got 'soon'"),
        ("ignore=['127.0.0.1']", "malformed ignore pattern '127.0.0.1'"),
        ("ignore=['[::1:80']", "malformed ignore pattern '[::1:80'"),
        ("ignore=['*:99999']", "malformed ignore pattern '*:99999': port '99999' is not a port number or glob"),
        ("ignore=['127.0.0.1:[0-9']", "malformed ignore pattern '127.0.0.1:[0-9': port '[0-9' has a '[' that is "
                                      "never closed"),
        ("ignore=['127.0.0.1:-5']", "malformed ignore pattern '127.0.0.1:-5': port '-5' can never match a port "
                                    "number (0-65535)"),
        ("ignore=['*:9999?']", "malformed ignore pattern '*:9999?': port '9999?' can never match a port number "
                               "(0-65535)"),
        ("enabled='no'", "'enabled' must be True or False, got 'no'"),
        ("1", "positional arguments (1,) are not accepted"),
    ],
)
def test_bad_marker_input_names_test_and_key(pytester, run, marker, message):
    pytester.makepyfile(test_bad=dedent(f"""
        import pytest

        @pytest.mark.sockhygiene({marker})
        def test_x():
            pass

        def test_fine():
            pass
    """))
    result = run("--strict-markers")
    result.assert_outcomes(passed=1, errors=1)
    assert errors_of(result) == ["test_bad.py::test_x"]
    result.stdout.fnmatch_lines([f"*sockhygiene marker on test_bad.py::test_x: {message}*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.no_fnmatch_line("*During handling of the above exception*")  # the message once, not twice


@pytest.mark.parametrize("mode", ["enforce", "off"])
def test_each_bad_marker_is_named_with_where_it_is_set(pytester, run, mode):
    """A typo in a module's ``pytestmark`` errors every test of the module: each error says the marker is set on
    the module (fix it once, there), and a test's own bad marker is not hidden behind it. Mode ``off`` validates
    markers too, with the same message."""
    pytester.makepyfile(test_m=dedent("""
        import pytest
        pytestmark = pytest.mark.sockhygiene(establshed=1)

        def test_a():
            pass

        @pytest.mark.sockhygiene(conections=2)
        def test_b():
            pass

        class TestC:
            pytestmark = pytest.mark.sockhygiene(time_wait=-1)

            def test_c(self):
                pass
    """))
    result = run("-p", "no:randomly", mode=mode)
    result.assert_outcomes(errors=3)
    module = "(set on the module test_m.py): unknown limit 'establshed' (did you mean 'established'?)"
    result.stdout.fnmatch_lines([
        f"sockhygiene marker on test_m.py::test_a {module}",
        "sockhygiene marker on test_m.py::test_b: unknown limit 'conections' (did you mean 'connections'?)",
        f"sockhygiene marker on test_m.py::test_b {module}",
        "sockhygiene marker on test_m.py::TestC::test_c (set on the class test_m.py::TestC): limit 'time_wait' *-1",
        f"sockhygiene marker on test_m.py::TestC::test_c {module}",
    ])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


@pytest.mark.parametrize(
    "ini, message",
    [
        ("sockhygiene = enforse", "ini 'sockhygiene': unknown mode 'enforse'; expected one of enforce, warn, off"),
        ("sockhygiene_established = many", "ini 'sockhygiene_established': expected a non-negative integer"),
        ("sockhygiene_time_wait = -3", "ini 'sockhygiene_time_wait': expected a non-negative integer"),
        ("sockhygiene_settle = later", "ini 'sockhygiene_settle': expected a number of seconds >= 0"),
        ("sockhygiene_ignore = localhost", "ini 'sockhygiene_ignore': malformed ignore pattern 'localhost'"),
        ("sockhygiene_ignore = 127.0.0.1:[0-9", "ini 'sockhygiene_ignore': malformed ignore pattern '127.0.0.1:[0-9': "
                                                "port '[0-9' has a '[' that is never closed"),
        ("sockhygiene_ignore = 127.0.0.1:-5", "ini 'sockhygiene_ignore': malformed ignore pattern '127.0.0.1:-5': "
                                              "port '-5' can never match a port number (0-65535)"),
    ],
)
def test_bad_ini_is_a_usage_error(pytester, run, ini, message):
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_ok="def test_ok(): pass")
    # no -o override: the broken ini value itself must be read; and read when the command line sets the mode too
    for mode in ("", "warn"):
        result = run(mode=mode, settle="")
        assert result.ret == pytest.ExitCode.USAGE_ERROR, mode
        result.stderr.fnmatch_lines([f"ERROR: sockhygiene: {message}*"])
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("args, message", [
    (("--sockhygiene=loud",), "--sockhygiene: unknown mode 'loud'"),
    (("--sockhygiene-backend=bsd",), "--sockhygiene-backend: unknown backend 'bsd'"),
])
def test_bad_cli_values(pytester, args, message):
    pytester.makepyfile(test_ok="def test_ok(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: sockhygiene: {message}*"])


@pytest.mark.parametrize("mode", ["enforce", "warn"])
def test_a_marker_added_after_the_setup_began_is_honoured_and_checked(pytester, run, mode):
    """``request.node.add_marker`` in a fixture (or in the test) adds the marker after the limits were read at the
    setup's start: it was ignored, and a typo in it passed silently. It now counts as a marker set before, on top
    of what the fixture's ``set_limits`` asked, and a bad one fails the test naming it and the key."""
    pytester.makepyfile(helpers=LEAK_ONE)
    pytester.makepyfile(test_m=dedent("""
        import socket, pytest
        from helpers import KEEP, leak

        @pytest.fixture
        def allow_two(request):
            request.node.add_marker(pytest.mark.sockhygiene(established=2))

        @pytest.fixture
        def typo(request):
            request.node.add_marker(pytest.mark.sockhygiene(establishd=2))

        def test_fixture_allows_two(server, allow_two):
            leak(server, 2)

        def test_fixture_allows_two_not_three(server, allow_two):
            leak(server, 3)

        def test_itself_allows_one(server, request):
            request.node.add_marker(pytest.mark.sockhygiene(established=1))
            leak(server, 1)

        def test_with_set_limits(server, request, sockhygiene):  # both count: the marker's, and set_limits'
            sockhygiene.set_limits(listen=1)
            request.node.add_marker(pytest.mark.sockhygiene(established=1))
            leak(server, 1)
            KEEP.append(socket.create_server(("127.0.0.1", 0)))

        def test_typo(typo):
            pass
    """))
    result = run(mode=mode)
    bad = ["test_m.py::test_typo"]
    assert errors_of(result) == (["test_m.py::test_fixture_allows_two_not_three", *bad] if mode == "enforce" else bad)
    result.stdout.fnmatch_lines(["sockhygiene marker on test_m.py::test_typo: unknown limit 'establishd' (did you "
                                 "mean 'established'?) (a marker added after the setup began)"])
    if mode == "enforce":
        result.stdout.fnmatch_lines(["*established: 3 > limit 2*"])


def test_marker_registered_for_strict_markers_even_when_off(pytester):
    pytester.makepyfile(test_s=dedent("""
        import pytest
        @pytest.mark.sockhygiene(established=1)
        def test_x():
            pass
    """))
    pytester.runpytest("--strict-markers", "-p", "no:cacheprovider").assert_outcomes(passed=1)


XDIST_SUITE = dedent("""
    import socket, pytest
    KEEP = []

    def _leak(server):
        KEEP.append(socket.create_connection((server.host, server.port)))

    @pytest.mark.parametrize("i", range(6))
    def test_clean(server, i):
        with socket.create_connection((server.host, server.port)):
            pass

    @pytest.mark.parametrize("i", range(3))
    def test_leaky(server, i):
        _leak(server)

    def test_listener():
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); KEEP.append(s)

    @pytest.mark.sockhygiene(estabished=1)
    def test_typo():
        pass

    @pytest.mark.parametrize("i", range(6))
    def test_clean_after(server, i):
        pass
""")


def test_xdist_gives_the_same_verdicts(pytester, run):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_x=XDIST_SUITE)
    plain = run("-p", "no:randomly")
    distributed = run("-n", "2", "-p", "no:randomly")
    assert "INTERNALERROR" not in distributed.stdout.str()
    expected = ["test_x.py::test_leaky[0]", "test_x.py::test_leaky[1]", "test_x.py::test_leaky[2]",
                "test_x.py::test_listener", "test_x.py::test_typo"]
    assert errors_of(plain) == expected
    # xdist's short summary may list the same node ids in another order; the verdicts must be identical
    assert errors_of(distributed) == expected


@pytest.mark.parametrize("marked", [None, "module", "class", "function", "param"])
def test_any_marked_answers_as_get_closest_marker_does(pytester, marked):
    """``any_marked`` (pytest-forked's ``forked`` marker, looked for once per run) walks each collector once; it must
    say what ``get_closest_marker`` says of every item, wherever the marker is set."""
    from pytest_sockhygiene.plugin import any_marked

    pytester.makepyfile(test_a="def test_one(): pass\ndef test_two(): pass\n")
    pytester.makepyfile(test_b=dedent(f"""
        import pytest
        {"pytestmark = pytest.mark.forked" if marked == "module" else ""}

        {"@pytest.mark.forked" if marked == "class" else ""}
        class TestB:
            def test_in_class(self):
                pass

        {"@pytest.mark.forked" if marked == "function" else ""}
        def test_b():
            pass

        @pytest.mark.parametrize("x", [1, {"pytest.param(2, marks=pytest.mark.forked)" if marked == "param" else "2"}])
        def test_p(x):
            pass
    """))
    items, _ = pytester.inline_genitems("-p", "no:sockhygiene")
    assert len(items) == 6
    expected = any(item.get_closest_marker("forked") is not None for item in items)
    assert expected is (marked is not None)
    assert any_marked(items, "forked") is expected
    assert any_marked(items, "sockhygiene") is False
