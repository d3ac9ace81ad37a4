"""Limits, ini parsing and endpoint globs: pure functions, no pytest machinery."""

from __future__ import annotations

import pytest

from pytest_sockhygiene.endpoints import ConfigError, IgnorePattern, endpoint_from_sockaddr, format_endpoint
from pytest_sockhygiene.limits import DEFAULT_SETTLE, DEFAULT_TIME_WAIT, Limits, limits_from_ini, merge_marker_kwargs
from pytest_sockhygiene.session import effective_limits, marker_limits
from pytest_sockhygiene.settings import read_mode, rewrite_bare_flag


def test_defaults():
    lim = Limits()
    assert (lim.established, lim.close_wait, lim.listen) == (0, 0, 0)
    assert lim.time_wait == DEFAULT_TIME_WAIT and lim.clients == 0 and lim.connections is None
    assert lim.settle == DEFAULT_SETTLE and lim.enabled and lim.ignore == ()


def test_closest_marker_wins_per_key():
    function, klass, module = (((), {"established": 3}), ((), {"established": 1, "listen": 2}),
                               ((), {"listen": 0, "time_wait": 9}))
    merged = merge_marker_kwargs([function, klass, module])
    assert merged == {"established": 3, "listen": 2, "time_wait": 9}


def test_none_means_unlimited_and_zero_is_kept():
    kwargs = {"connections": None, "established": 0}
    assert merge_marker_kwargs([((), kwargs)]) == kwargs


def test_marker_error_names_test_and_key():
    expected = r"^sockhygiene marker on t.py::x: unknown limit 'close_wiat' \(did you mean 'close_wait'\?\)$"
    with pytest.raises(ConfigError, match=expected):
        marker_limits(Limits(), "t.py::x", [((), {"close_wiat": 1})])


def test_marker_ignore_adds_to_ini_ignore():
    base = Limits(ignore=(IgnorePattern("*:5432"),))
    lim = effective_limits(base, {"ignore": (IgnorePattern("*:6379"),)})
    assert [p.text for p in lim.ignore] == ["*:5432", "*:6379"]


def test_ini_values():
    lim = limits_from_ini({"sockhygiene_established": "2", "sockhygiene_connections": "unlimited",
                           "sockhygiene_time_wait": " 7 ", "sockhygiene_settle": "0.25",
                           "sockhygiene_ignore": ["*:6379", "", "[::1]:*"], "sockhygiene_listen": ""})
    assert (lim.established, lim.connections, lim.time_wait, lim.settle, lim.listen) == (2, None, 7, 0.25, 0)
    assert [p.text for p in lim.ignore] == ["*:6379", "[::1]:*"]


@pytest.mark.parametrize("key, raw", [("sockhygiene_clients", "1.5"), ("sockhygiene_clients", "-1"),
                                      ("sockhygiene_settle", "nan"), ("sockhygiene_settle", "-2")])
def test_bad_ini_names_key(key, raw):
    with pytest.raises(ConfigError, match=f"^ini '{key}': "):
        limits_from_ini({key: raw})


@pytest.mark.parametrize("pattern, endpoint, hit", [
    ("127.0.0.1:5432", ("127.0.0.1", 5432), True),
    ("127.0.0.1:5432", ("127.0.0.1", 5433), False),
    ("*:6379", ("10.1.2.3", 6379), True),
    ("[::1]:*", ("::1", 80), True),
    ("[::1]:*", ("127.0.0.1", 80), False),
    ("[::ffff:127.0.0.1]:80", ("127.0.0.1", 80), True),
    ("127.0.0.*:80?", ("127.0.0.9", 801), True),
    ("127.0.0.*:80?", ("127.0.0.9", 8080), False),
])
def test_ignore_globs(pattern, endpoint, hit):
    assert IgnorePattern(pattern).matches(endpoint) is hit


@pytest.mark.parametrize("bad", ["", "127.0.0.1", ":80", "[::1:80", "host:port:extra", "[]:80", "*:70000", "*:http"])
def test_malformed_globs(bad):
    with pytest.raises(ConfigError, match="malformed ignore pattern"):
        IgnorePattern(bad)


def test_endpoint_normal_form():
    assert endpoint_from_sockaddr(("::ffff:127.0.0.1", 80, 0, 0)) == ("127.0.0.1", 80)
    assert endpoint_from_sockaddr(("fe80::1%eth0", 80, 0, 2)) == ("fe80::1", 80)
    assert endpoint_from_sockaddr("/tmp/unix.sock") is None
    assert format_endpoint(("::1", 8)) == "[::1]:8" and format_endpoint(("1.2.3.4", 8)) == "1.2.3.4:8"


def test_mode_precedence_and_bare_flag():
    assert read_mode(None, "") == "off"
    assert read_mode(None, "warn") == "warn"
    assert read_mode("enforce", "warn") == "enforce"
    args = ["--sockhygiene", "tests/"]
    rewrite_bare_flag(args)
    assert args == ["--sockhygiene=enforce", "tests/"]
    args = ["--sockhygiene", "warn", "tests/"]
    rewrite_bare_flag(args)
    assert args == ["--sockhygiene", "warn", "tests/"]
    args = ["--", "--sockhygiene"]
    rewrite_bare_flag(args)
    assert args == ["--", "--sockhygiene"]


def test_host_names_are_refused_except_localhost():
    with pytest.raises(ConfigError, match=r"'db\.internal' is not an IP address; host names are not resolved"):
        IgnorePattern("db.internal:5432")
    local = IgnorePattern("localhost:5432")
    assert local.matches(("127.0.0.1", 5432)) and local.matches(("::1", 5432)) and not local.matches(("10.0.0.1", 5432))


def test_marker_limits_are_reused_only_for_the_same_values_of_the_same_types():
    """A controller parses a marker once per distinct set of values (a suite marks many tests alike); a value
    equal as a key but refused (``True`` for ``1``), a bad marker after a good one, and an unhashable value (a
    list of globs) are each parsed on their own, with the test's own name in the message."""
    from pytest_sockhygiene.session import Controller
    from pytest_sockhygiene.settings import Settings

    controller = Controller(Settings(mode="warn", backend="auto", limits=Limits()), rootdir=None)
    first = controller.limits_for("t.py::a", [((), {"connections": 1})])
    assert first.connections == 1
    assert controller.limits_for("t.py::b", [((), {"connections": 1})]) is first
    with pytest.raises(ConfigError, match=r"^sockhygiene marker on t.py::c: .*connections.*True"):
        controller.limits_for("t.py::c", [((), {"connections": True})])
    with pytest.raises(ConfigError, match=r"^sockhygiene marker on t.py::d: .*connections.*1.0"):
        controller.limits_for("t.py::d", [((), {"connections": 1.0})])
    globs = [((), {"ignore": ["*:6379"]})]
    assert [p.text for p in controller.limits_for("t.py::e", globs).ignore] == ["*:6379"]
    assert controller.limits_for("t.py::f", [((), {"connections": 2}), ((), {"connections": 1})]).connections == 2
