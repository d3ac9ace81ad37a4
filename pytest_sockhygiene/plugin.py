"""The pytest face of pytest-sockhygiene: options, ini keys, the marker, the window hooks and the fixture.

Every hook here is a few lines; the logic lives in ``session.Controller`` and the modules it uses.

The window opens in ``pytest_runtest_setup`` (``tryfirst``: inside every setup wrapper, before any fixture is
set up) and closes in a
finalizer of the item registered before its first fixture's, so it runs after every function-scoped fixture's
teardown and before broader ones: checking before fixture finalizers run reports sockets that fixtures close as
leaks, which is what sank pytest-openfiles. These hooks run for every test, so the clean path through them is
kept to a few attribute reads and one quick look at the fd table (see docs/performance.md).
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Generator, Iterable
from typing import Any, Callable

import pytest

from . import baseline as baseline_mod
from . import origin as origin_mod
from .clients import end_finalizer_walk_at
from .endpoints import ConfigError
from .limits import LIMIT_KEYS, Limits, marker_problems, merge_marker_kwargs
from .logheld import Kept, captured_records, expected_failure
from .outputs import Outputs, check_distinct, read_outputs, write_outputs
from .report import failure_text
from .reporting.annotations import workflow_commands
from .reporting.options import CiOptions, read_ci_options
from .results import SessionResults, clean_record, full_record, sampled_clean_record, test_record
from .session import Controller, bad_marker_message, marker_limits
from .settings import LIBRARY_PACKAGES_KEY, Settings, ini_value_types, read_settings, rewrite_bare_flag
from .summary import plural, summary_lines
from .verdict import CLEAN, HELD_SOCKET_KINDS, KINDS, Verdict
from .warning import warn_without_failing

PLUGIN_NAME = "sockhygiene-session"
_SETTINGS_KEY = pytest.StashKey[Settings]()
_CI_KEY = pytest.StashKey[CiOptions]()


class _ItemState:
    """What the plugin keeps for the test being run (held by the plugin, not in ``item.stash``: pytest keeps every
    item for the whole run, and nothing of this is needed once the test is judged)."""

    __slots__ = ("called", "item", "judge", "limits", "marks", "no_fixture_teardown", "record", "window")

    def __init__(self, item: pytest.Item, limits: Limits | None, marks: int = 0) -> None:
        self.item = item
        self.limits = limits
        self.marks = marks
        """How many markers the test had of its own when its limits were read (``_limits_added_since``)."""
        self.window = False
        self.record: Any = None
        self.no_fixture_teardown = False
        """No function-scoped fixture was set up: the verdict's finalizer is the first of the teardown, so it
        checks the socket hooks itself as the start of the teardown (only plugins' teardown hooks ran since)."""
        self.judge: Callable[[pytest.Item, _ItemState, bool], None] | None = None
        self.called = False
        """The test function was called (pytest then sets ``sys.last_value`` afresh: see ``_failed_note``)."""

    def __call__(self) -> None:
        """The test's finalizer (see ``SockHygienePlugin._judge_in_finalizer``): the state is its own finalizer, so
        scheduling a verdict builds no ``functools.partial`` per test."""
        if self.judge is not None:
            self.judge(self.item, self, True)


def _failure_of(state: _ItemState) -> BaseException | None:
    """The exception the test's call raised, which pytest keeps (``sys.last_value``) until the next test's call; None
    if the call did not raise, or was never made (a failed setup leaves an earlier test's there)."""
    exc = getattr(sys, "last_value", None) if state.called else None
    if not isinstance(exc, BaseException):
        return None
    code = getattr(getattr(state.item, "obj", None), "__code__", None)
    tb = exc.__traceback__
    while tb is not None:  # the test function's frame is in its traceback (an earlier test's is not)
        if tb.tb_frame.f_code is code:
            return exc
        tb = tb.tb_next
    return None if code is not None else exc


def _expected_failure_of(state: _ItemState) -> BaseException | None:
    """The test's call's exception, if it is the failure the test's ``xfail`` marker expects (``logheld.py``)."""
    exc = _failure_of(state)
    return exc if exc is not None and expected_failure(state.item, exc) else None


_HELD_KINDS = HELD_SOCKET_KINDS | {"clients"}
"""What a failed test's kept locals can hold: sockets, and clients not yet closed."""


def _failed_note(verdict: Verdict, state: _ItemState) -> str:
    """For a test whose function raised: pytest keeps that exception's traceback (``sys.last_traceback``, for
    post-mortem debugging) until the next test's call, and with it the test's local variables - a client closed by
    its ``with`` whose pool frees idle connections only when collected (urllib3's), a response holding its
    connection. What they hold is still open when the test is judged; it would not be had the test passed. Said,
    not hidden: the failure may also have skipped a close. For the failure an xfail marker expects, a socket only
    that traceback holds is not counted (``logheld.py``): what is left is held elsewhere too, or is a client that
    the failure left unclosed, and "fix the failure first" does not apply."""
    if not any(v.kind in _HELD_KINDS for v in verdict.violations):
        return ""
    exc = _failure_of(state)
    if exc is None:
        return ""
    if expected_failure(state.item, exc):
        return ("\n  note: this test failed as its xfail marker expects, and pytest keeps that failure's traceback - "
                "and with it the test's local variables - until the next test runs; what its locals hold is still "
                "open. Close what the test opens in a `with` block (or a `finally`), so that the expected failure "
                "cannot skip the close.")
    return ("\n  note: this test failed, and pytest keeps its failure's traceback - and with it the test's local "
            "variables - until the next test runs, for post-mortem debugging; what its locals hold is still open. "
            "If this goes away once the test passes, fix the failure first.")


MARKER_DOC = (
    "sockhygiene(established=0, close_wait=0, listen=0, time_wait=5, clients=0, connections=None, "
    "unused_clients=None, ignore=[...], settle=0.5, enabled=True): socket limits for this test (pytest-sockhygiene)"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sockhygiene", "socket hygiene (pytest-sockhygiene)")
    group.addoption(
        "--sockhygiene", action="store", nargs="?", const="enforce", default=None, metavar="MODE",
        dest="sockhygiene",
        help="check every test's sockets: enforce (fail; what a bare --sockhygiene means), warn, or off.",
    )
    group.addoption(
        "--sockhygiene-backend", action="store", default=None, metavar="NAME", dest="sockhygiene_backend",
        help="socket table backend: auto (default), linux (/proc/self/fd + kernel lookups) or psutil.",
    )
    group.addoption(
        "--sockhygiene-report", action="store", default=None, metavar="PATH", dest="sockhygiene_report",
        help="write every checked test's counts and violations, and the session's health, as JSON to PATH.",
    )
    group.addoption(
        "--sockhygiene-baseline", action="store", default=None, metavar="PATH", dest="sockhygiene_baseline",
        help="fail tests whose connections or TIME_WAIT grew beyond the baseline in PATH (+max(1, 10%%)).",
    )
    group.addoption(
        "--sockhygiene-baseline-update", action="store_true", default=False, dest="sockhygiene_baseline_update",
        help="write the current counts to the --sockhygiene-baseline file instead of comparing.",
    )
    parser.addini("sockhygiene", "sockhygiene mode: enforce, warn or off (default off)", default="")
    limit_type, settle_type = ini_value_types(pytest.version_tuple)  # numbers in pytest 9.2's [tool.pytest]
    for kind in LIMIT_KEYS:
        parser.addini(f"sockhygiene_{kind}", f"sockhygiene: most {kind} allowed per test (or unlimited)",
                      type=limit_type, default="")
    parser.addini("sockhygiene_ignore", "sockhygiene: endpoint globs to ignore, e.g. *:6379", type="linelist",
                  default=[])
    parser.addini("sockhygiene_settle", "sockhygiene: seconds to re-check a violation before reporting it",
                  type=settle_type, default="")
    parser.addini(LIBRARY_PACKAGES_KEY, "sockhygiene: your own packages whose lines are library code in "
                  "origins (the test's line that called into them is named), one per line", type="linelist",
                  default=[])
    _add_ci_options(group, parser)


def _add_ci_options(group: Any, parser: pytest.Parser) -> None:
    """The outputs for CI (issue 14): annotations, the HTML page. Read by ``read_ci_options``."""
    group.addoption(
        "--sockhygiene-annotate", action="store", default=None, metavar="WHERE", dest="sockhygiene_annotate",
        help="GitHub Actions annotations, one per violation at the line that opened the socket: auto (the "
             "default: github when GITHUB_ACTIONS=true), github or off.",
    )
    group.addoption(
        "--sockhygiene-html", action="store", default=None, metavar="PATH", dest="sockhygiene_html",
        help="write the session as one self-contained HTML page to PATH: a timeline of TIME_WAIT in flight, "
             "open fds and connections per test, and each violation's details.",
    )
    parser.addini("sockhygiene_annotate", "sockhygiene: GitHub Actions annotations: auto (default), github or off",
                  default="")


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    rewrite_bare_flag(args)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_DOC)
    try:
        settings = read_settings(config.getoption("sockhygiene"), config.getoption("sockhygiene_backend"),
                                 config.getini)
    except ConfigError as e:
        raise pytest.UsageError(f"sockhygiene: {e}") from None
    config.stash[_SETTINGS_KEY] = settings
    is_worker = hasattr(config, "workerinput")
    try:  # checked in every mode, like the other options; the page's path only where a page will be written
        config.stash[_CI_KEY] = read_ci_options(
            config.getoption("sockhygiene_annotate"), config.getoption("sockhygiene_html"), config.getini,
            os.environ, check_writable=settings.active and not is_worker)
    except ConfigError as e:
        raise pytest.UsageError(f"sockhygiene: {e}") from None
    try:  # in every mode, as the ini keys: a typo fails fast whether or not checks are on
        outputs = read_outputs(config.getoption("sockhygiene_report"), config.getoption("sockhygiene_baseline"),
                               config.getoption("sockhygiene_baseline_update"), check_writable=not is_worker)
    except ConfigError as e:
        raise pytest.UsageError(f"sockhygiene: {e}") from None
    if settings.active and not is_worker:
        try:
            check_distinct({"--sockhygiene-report": outputs.report, "--sockhygiene-html": config.stash[_CI_KEY].html,
                            "--sockhygiene-baseline": outputs.baseline_path,
                            "--junitxml": config.getoption("xmlpath", None),
                            "--html": config.getoption("htmlpath", None)})  # pytest-html's, where installed
        except ConfigError as e:
            raise pytest.UsageError(f"sockhygiene: {e}") from None
    if not settings.active:
        ignored = outputs.given() + (["--sockhygiene-html"] if config.getoption("sockhygiene_html") else [])
        config.pluginmanager.register(_OffMode(settings, ignored if not is_worker else []), PLUGIN_NAME + "-off")
    else:
        from .trackers import builtin_trackers

        if settings.library_packages:
            origin_mod.add_library_packages(settings.library_packages)

        for tracker in builtin_trackers():
            name = f"sockhygiene-tracker-{getattr(tracker, 'module', type(tracker).__name__)}"
            if not config.pluginmanager.has_plugin(name):
                config.pluginmanager.register(tracker, name)
        controller = Controller(settings, str(config.rootpath), config.hook)
        end_finalizer_walk_at(_pytest_call_codes())
        reporter = None if is_worker else SockHygieneReporter(config, outputs)
        plugin = SockHygienePlugin(config, controller, outputs, reporter)
        config.pluginmanager.register(plugin, PLUGIN_NAME)
        config.pluginmanager.register(_SessionEnd(plugin), PLUGIN_NAME + "-session-end")
        if reporter is not None:
            config.pluginmanager.register(reporter, PLUGIN_NAME + "-reporter")
            if reporter.bodies is not None:
                config.pluginmanager.register(reporter.bodies, PLUGIN_NAME + "-finished-bodies")
        else:
            config.pluginmanager.register(_RecordCarrier(plugin), PLUGIN_NAME + "-carrier")
        if reporter is not None and config.pluginmanager.has_plugin("pytest_forked"):
            forked = _ForkedChildren(plugin, reporter.results, str(config.rootpath))
            if config.getoption("forked", False):
                config.pluginmanager.register(forked, PLUGIN_NAME + "-forked")
            else:  # installed, not asked for: only a test marked ``forked`` forks, and only then is it needed
                config.pluginmanager.register(_ForkedMarked(forked), PLUGIN_NAME + "-forked-marked")
        _register_pytest_html(config, plugin)


def _pytest_call_codes() -> list[Any]:
    """The code of pytest's functions that call a test function or a fixture's teardown: where a close from a
    test's own code is known not to be a finalizer's (``clients.end_finalizer_walk_at``). Those of them this
    version of pytest has."""
    names = (("_pytest.python", "pytest_pyfunc_call"), ("_pytest.fixtures", "call_fixture_func"),
             ("_pytest.fixtures", "_teardown_yield_fixture"))
    functions = (getattr(sys.modules.get(module), name, None) for module, name in names)
    return [code for code in (getattr(f, "__code__", None) for f in functions) if code is not None]


def _register_pytest_html(config: pytest.Config, plugin: SockHygienePlugin) -> None:
    """pytest-html's rows and extras (issue 14): only when it is installed and ``--html`` is given, since its
    hooks exist only then."""
    if not (config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None)):
        return
    from .reporting.pytest_html import PytestHtmlRows

    def record_of(item: pytest.Item) -> Any:
        state = plugin.current
        return full_record(state.record) if state is not None and state.item is item else None

    rows = PytestHtmlRows(record_of, reporting=plugin.reporter is not None, problem=plugin.controller.problem)
    config.pluginmanager.register(rows, PLUGIN_NAME + "-pytest-html")


def _location(item: pytest.Item) -> tuple[str, int]:
    """Where a warn-mode warning points: the test function, not this plugin; ``_test_location`` made absolute.

    From ``item.location``, which pytest computed (and cached) when the test started: ``reportinfo()`` asked
    again walks the function's source lines, a tenth of a warn-mode verdict's time."""
    rel, lineno = _test_location(item)
    return os.path.normpath(os.path.join(str(item.config.rootpath), rel)), lineno


def _test_location(item: pytest.Item) -> tuple[str, int]:
    """The test function's file (relative to the rootdir, as pytest prints it) and line: where an annotation points
    when no origin is known."""
    try:
        return _file_and_line(item.location)
    except Exception:  # noqa: BLE001
        return item.nodeid.split("::", 1)[0], 1


def _doctest_of(item: pytest.Item) -> Any:
    """The DocTest a doctest item runs (pytest's ``DoctestItem.dtest``), or None for any other test. A doctest
    takes no marker, and its examples' code has no file of its own (``origin.add_doctest``)."""
    return getattr(item, "dtest", None)


def _file_and_line(location: tuple[Any, ...]) -> tuple[str, int]:
    """A pytest location (an item's, a report's: file, 0-based line, name) as a file and a 1-based line."""
    path, lineno, _ = location
    return str(path), (lineno or 0) + 1


_GENERATED_FIXTURES = re.compile(r"_?(?:unittest|xunit)_(setUpClass|setup_method|setup_module|setup_class|"
                                 r"setup_function)_fixture_(.+)")
_GENERATED_NAMES = {"setUpClass": "setUpClass", "setup_method": "setUp", "setup_module": "module setup",
                    "setup_class": "setup_class", "setup_function": "setup_function"}


def fixture_label(scope: str, argname: str) -> str:
    """How a fixture that owns sockets is named in a report: ``class-scoped fixture 'db'``. The fixtures pytest
    generates for unittest's ``setUpClass`` / ``setUp`` and xunit's ``setup_module`` / ``setup_class`` are named
    for what the user wrote (``setUpClass of ServerTests``), not ``_unittest_setUpClass_fixture_ServerTests``. For
    a unittest class, pytest's ``setup_method`` fixture runs ``setUp``; for a plain class, ``setup_method``."""
    m = _GENERATED_FIXTURES.fullmatch(argname) if "_fixture_" in argname else None
    if m is not None:
        kind, owner = m.groups()
        what = _GENERATED_NAMES[kind] if "unittest" in argname or kind != "setup_method" else kind
        argname = f"{what} of {owner}"
    return f"{scope}-scoped fixture '{argname}'"


def _markers(item: pytest.Item) -> list[Any]:
    """``(args, kwargs)`` of every ``sockhygiene`` marker, closest first: what ``item.iter_markers`` yields."""
    return [(m.args, m.kwargs) for m in item.iter_markers("sockhygiene")]


def _node_label(node: Any) -> str:
    """How a marker's collector is named in an error: "the module test_x.py", "the class test_x.py::TestY"."""
    if isinstance(node, pytest.Package):  # (a Module subclass in pytest 7)
        kind = "package"
    elif isinstance(node, pytest.Module):
        kind = "module"
    elif isinstance(node, pytest.Class):
        kind = "class"
    else:
        kind = type(node).__name__.lower()
    return f"the {kind} {node.nodeid or node.name}"


def _bad_marker_text(item: pytest.Item, error: ConfigError) -> str:
    """The setup error of a test whose ``sockhygiene`` markers are wrong: every bad one, and where each is set."""
    try:
        places = [(None if node is item else _node_label(node), mark.args, mark.kwargs)
                  for node, mark in item.iter_markers_with_node("sockhygiene")]
        return bad_marker_message(item.nodeid, marker_problems(places), str(error))
    except Exception:  # noqa: BLE001 - a node of an unusual kind: the merged error still names the test and key
        return str(error)


class _MarkerWalk:
    """``_markers`` for every test, cheaply: the test's own markers, then its collectors' (module, class, package),
    which are walked once per collector and kept. Collectors get their markers at collection; the one thing this
    does not see is a marker added to a module or class *after* its first test started (one added to the test
    itself, at any time before its setup, is seen)."""

    def __init__(self) -> None:
        self._inherited: dict[Any, list[Any]] = {}

    def __call__(self, item: pytest.Item) -> list[Any]:
        try:
            parent = item.parent
            inherited = self._inherited.get(parent)
            if inherited is None:
                inherited = self._inherited[parent] = _markers(parent) if parent is not None else []  # type: ignore[arg-type]
            marks = item.own_markers
            # most tests have no marker of their own: no list is built for them
            own = [(m.args, m.kwargs) for m in marks if m.name == "sockhygiene"] if marks else None
        except AttributeError:  # a node or mark of an unusual kind: pytest's own walk copes with it
            return _markers(item)
        return own + inherited if own else inherited


def any_marked(items: Iterable[Any], name: str) -> bool:
    """Whether some item would answer ``item.get_closest_marker(name)`` with a marker: one carries it, or a
    collector above it (class, module, package, directory) does. Each collector is looked at once, however many
    items share it: ``get_closest_marker`` walks every item's whole chain of parents through generators, about
    10k instructions per item, which a suite of 2,000 test modules paid at every run where pytest-forked is
    installed (``_ForkedMarked``)."""
    unmarked: set[int] = set()  # ids of the collectors known to carry it nowhere up their chain
    for item in items:
        node: Any = item
        chain: list[int] = []
        while True:
            for mark in getattr(node, "own_markers", None) or ():  # (loops, not any() over generators: per item)
                if getattr(mark, "name", None) == name:
                    return True
            node = getattr(node, "parent", None)
            key = id(node)
            if node is None or key in unmarked:  # the common case: the item's module was looked at for another
                break
            chain.append(key)
        unmarked.update(chain)  # (collectors live for the session: an id stays theirs)
    return False


class _OffMode:
    """Mode ``off``: nothing is checked, but nothing the user gave is silently dropped either. Markers are validated
    once, after collection (no per-test hook: a test pays nothing in this mode); a test with a bad marker errors at
    setup with the message ``enforce`` mode gives. Output options given anyway get one line in the summary."""

    def __init__(self, settings: Settings, ignored_options: list[str]) -> None:
        self.settings = settings
        self.ignored_options = ignored_options

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        walk = _MarkerWalk()
        bad: dict[pytest.Item, str] = {}
        seen: dict[int, tuple[Any, ConfigError | None]] = {}  # id(kwargs) -> (kwargs, its error): one parse per marker
        for item in session.items:
            # in the order enforce mode parses them (farthest first), so the message is the one it would give
            for args, kwargs in reversed(walk(item)):
                known = seen.get(id(kwargs))
                if known is None:
                    try:
                        merge_marker_kwargs([(args, kwargs)])
                    except ConfigError as e:
                        known = (kwargs, e)
                    else:
                        known = (kwargs, None)
                    seen[id(kwargs)] = known
                if known[1] is not None:  # the message enforce mode gives
                    bad[item] = _bad_marker_text(item, ConfigError(f"sockhygiene marker on {item.nodeid}: {known[1]}"))
                    break
        if bad:
            session.config.pluginmanager.register(_BadMarkers(bad), PLUGIN_NAME + "-bad-markers")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.ignored_options:
            terminalreporter.write_line(
                f"sockhygiene: {', '.join(self.ignored_options)} ignored: the mode is off, so nothing is checked, "
                "compared or written (turn checks on with --sockhygiene)", yellow=True)


class _BadMarkers:
    """Mode ``off``, registered only when some test has a bad ``sockhygiene`` marker: that test errors at setup,
    before its fixtures run."""

    def __init__(self, bad: dict[pytest.Item, str]) -> None:
        self.bad = bad

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        message = self.bad.get(item)
        if message is not None:
            pytest.fail(message, pytrace=False)


class SockHygienePlugin:
    """Registered for the session when the mode is ``enforce`` or ``warn``."""

    def __init__(self, config: pytest.Config, controller: Controller, outputs: Outputs,
                 reporter: SockHygieneReporter | None) -> None:
        self.config = config
        self.controller = controller
        self.outputs = outputs
        self.reporter = reporter
        self.unscheduled: pytest.Item | None = None
        """The test whose window is open and whose check is not yet scheduled (no fixture set up yet)."""
        self.current: _ItemState | None = None
        """The test being run (from its setup on; its window is open while ``window`` is set)."""
        self.markers = _MarkerWalk()
        self.junit = bool(config.getoption("xmlpath", None))
        self.enforce = controller.settings.mode == "enforce"
        self.interrupted: list[str] = []
        """Tests whose window was still open at the session's end: the run was interrupted during them."""
        self.sampling = bool(outputs.report or config.stash[_CI_KEY].html)
        """A report or the HTML page was asked for: every record carries its sample (time, open fds)."""
        self._add_clean: Callable[[Any], None] | None = (
            reporter.results.clean_adder() if reporter is not None and not self.sampling else None)
        """``SessionResults.clean_adder``: a clean test's record kept by one C call (None where no records are kept
        here, or where each carries a sample)."""
        self._clean_properties = tuple((f"sockhygiene_{k}", 0) for k in KINDS)
        """A clean test's JUnit properties: every count 0 (``CLEAN``'s)."""
        self._judge_bound = self._judge
        """Each test's finalizer calls it (``_ItemState.judge``): one bound method for the run, not one per test."""
        self._last_judged: pytest.Item | None = None
        """The test judged last: one judged again right after is a rerun (``SessionResults.repeats``)."""

    # -- the window ------------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Open the test's window. A ``tryfirst`` plain implementation: every hook wrapper around the setup has
        started (pytest's own - logging, capture - and every other plugin's: what they open around a test is
        theirs, not the test's), and neither any other implementation nor any fixture has run. A bad marker
        fails the test here, before its fixtures run. Plain implementations, not wrappers, for the three phases:
        pluggy's price for a wrapper is about twice a plain one's, paid by every test."""
        last = self.current
        if last is not None and last.window:  # never expected: the last check did not run (see _judge_in_finalizer)
            self._judge(last.item, last, report=False)
        markers = self.markers(item)
        limits = self.controller.settings.limits
        if markers:
            try:
                limits = self.controller.limits_for(item.nodeid, markers)
            except ConfigError as e:
                self.current = _ItemState(item, None)
                bad: str | None = _bad_marker_text(item, e)
            else:
                bad = None
            if bad is not None:  # failed outside the except block: the message is shown once, not twice
                pytest.fail(bad, pytrace=False)
        state = self.current = _ItemState(item, limits, len(item.own_markers))
        dtest = getattr(item, "dtest", None)  # (``_doctest_of``, inline: every test)
        if dtest is not None:  # its examples' lines, for the origins of what they open
            origin_mod.add_doctest(dtest)
        if limits.enabled:
            try:
                if self.controller.open_window(item) is not None:
                    state.window = True
                    self.unscheduled = item
            except Exception as e:  # noqa: BLE001
                self.controller.problem(f"opening the window of {item.nodeid}", e)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        """The setup passed; the test function is next. A test for which no fixture was set up (none, or only
        cached broader ones) has no function-scoped finalizer yet, so the verdict's, registered now, still runs
        before any broader teardown. The socket hooks are checked: a replacement found now was made by a fixture
        (the test's code, so the window may have missed connects), or, with no fixture, by a plugin's setup hook."""
        state = self.current
        if state is None or state.item is not item or not state.window:
            return
        state.called = True
        recorder = self.controller.recorder
        hooks_in_place = recorder is not None and recorder.in_place()  # (_keep_hooks' own test, inline: per test)
        if self.unscheduled is item:
            self.unscheduled = None
            if not hooks_in_place:
                self._keep_hooks(False)
            state.no_fixture_teardown = True  # no check of its own at teardown start: the verdict's is that check
            self._judge_in_finalizer(item, state)
        elif not hooks_in_place:
            self._keep_hooks(True)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        """The teardown starts, before every other plugin's teardown hook (pytest-socket writes
        ``socket.socket.connect`` back in its own). The socket hooks are checked: a replacement found now was made
        by the test function. A test whose setup stopped before any fixture was set up (a ``skip`` marker, an
        unknown fixture; or no call phase, ``--setup-only``) has no finalizer of the plugin: it is judged now,
        without failing it - its setup's outcome is its result."""
        state = self.current
        if state is None or state.item is not item or not state.window:
            return
        state.called = True
        if self.unscheduled is item:
            self.unscheduled = None
            self._judge(item, state, report=False)
            return
        recorder = self.controller.recorder
        if recorder is None or not recorder.in_place():  # (_keep_hooks' own test, inline: per test)
            self._keep_hooks(True)
        if not state.no_fixture_teardown:
            self._keep_hooks_at_teardown(item)

    def _keep_hooks(self, user_code: bool) -> None:
        recorder = self.controller.recorder
        if recorder is not None and recorder.in_place():  # the clean path, called ~5 times per test: inline
            return
        try:
            self.controller.keep_hooks(user_code)
        except Exception as e:  # noqa: BLE001
            self.controller.problem("checking the socket hooks", e)

    def _keep_hooks_at_teardown(self, item: pytest.Item) -> None:
        """Check the socket hooks when the teardown of the test's fixtures starts: a finalizer registered after
        every function-scoped fixture's runs first, after every plugin's ``pytest_runtest_teardown`` hook
        (pytest-socket writes ``socket.socket.connect`` back in its own) and before any fixture's teardown."""
        try:
            item.addfinalizer(self._keep_hooks_plugin_code)
        except Exception as e:  # noqa: BLE001
            self.controller.problem(f"scheduling the socket hook check of {item.nodeid}", e)

    def _keep_hooks_plugin_code(self) -> None:
        self._keep_hooks(False)

    def _judge_in_finalizer(self, item: pytest.Item, state: _ItemState) -> None:
        """Take the verdict in a finalizer of the item registered before its first fixture's.

        Finalizers run last-in first-out, so this one runs after every function-scoped fixture's teardown and
        before class-, module- and session-scoped fixtures are torn down (they are not the test's: a session
        server shutting down after the last test would otherwise reset that test's leaked connection, or leave
        TIME_WAIT entries on its account). If it cannot be registered, the next test's setup (or the session's
        end) judges the window without failing anything.
        """
        try:
            state.judge = self._judge_bound
            item.addfinalizer(state)
        except Exception as e:  # noqa: BLE001
            self.controller.problem(f"scheduling the check of {item.nodeid}", e)

    def _remember_value(self, fixturedef: Any, value: Any) -> None:
        """A broader fixture's value, while it is set up: what it holds is its own (``holders.py``)."""
        recorder = self.controller.recorder
        if recorder is not None:
            recorder.ownership.fixture_values[id(fixturedef)] = (
                fixture_label(fixturedef.scope, fixturedef.argname), value)

    @pytest.hookimpl
    def pytest_fixture_post_finalizer(self, fixturedef: Any, request: Any) -> None:
        recorder = self.controller.recorder
        if recorder is not None and recorder.ownership.fixture_values:
            recorder.ownership.fixture_values.pop(id(fixturedef), None)
        if getattr(fixturedef, "scope", "function") != "function":
            try:
                self.controller.fixture_torn_down(fixture_label(fixturedef.scope, fixturedef.argname))
            except Exception as e:  # noqa: BLE001
                self.controller.look_afresh()
                self.controller.problem(f"fixture {fixturedef.argname!r} teardown", e)

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: Any, request: Any) -> Generator[None, Any, Any]:
        # a fixture's error passes through this frame: pytest shows the user's fixture, not this wrapper (a
        # conftest's fixture, or a unittest class's inherited setUpClass, is not cut from the traceback by its path)
        __tracebackhide__ = True
        item = self.unscheduled
        if item is not None:
            self.unscheduled = None
            assert self.current is not None
            self._keep_hooks(False)  # only plugins' setup hooks ran since the window opened
            self._judge_in_finalizer(item, self.current)
        # ownership is tracked whether or not a window is open: a fixture first set up by a disabled test
        # still owns what it creates
        broader = getattr(fixturedef, "scope", "function") != "function" and self.controller.usable
        if broader:
            try:
                self.controller.fixture_setup_begin(fixture_label(fixturedef.scope, fixturedef.argname))
            except Exception as e:  # noqa: BLE001
                self.controller.problem(f"fixture {fixturedef.argname!r} setup", e)
                broader = False
        recorder = self.controller.recorder
        ownership = recorder.ownership if recorder is not None and not broader else None
        if ownership is not None:
            # a function-scoped fixture's connects are the test's, labelled with the fixture: a readiness probe
            # reads as plumbing, not as the code under test (report.py)
            outer = ownership.function_fixture
            ownership.function_fixture = fixture_label("function", fixturedef.argname)
        try:
            value = yield
            if broader:
                self._remember_value(fixturedef, value)
            return value
        finally:
            if ownership is not None:
                ownership.function_fixture = outer
            if broader:
                try:
                    self.controller.fixture_setup_end()
                except Exception as e:  # noqa: BLE001
                    self.controller.problem(f"fixture {fixturedef.argname!r} setup", e)

    def _judge(self, item: pytest.Item, state: _ItemState, report: bool) -> None:
        if not state.window:
            return
        state.window = False
        if len(item.own_markers) != state.marks and not self._limits_added_since(item, state, report):
            return  # (a marker added since the setup began, by a fixture's add_marker: a bad one)
        limits = state.limits
        assert limits is not None
        if not limits.enabled:  # switched off at run time with sockhygiene.set_limits(enabled=False)
            self.controller.abandon_window()
            return
        try:
            verdict = self.controller.close_window(limits, user_code=not state.no_fixture_teardown)
        except Exception as e:  # noqa: BLE001
            self.controller.abandon_window()
            self.controller.problem(f"judging {item.nodeid}", e)
            return
        if verdict is None:
            return
        if item is self._last_judged and self.reporter is not None:  # attempts of one test (pytest-rerunfailures)
            self.reporter.results.repeats = True
        self._last_judged = item
        grown: list[tuple[str, int, int]] = []
        if verdict is CLEAN:  # the clean path: nothing happened, nothing to compare, the test is its record
            if self.sampling:
                record = sampled_clean_record(item.nodeid, time.time(), self.controller.fd_sample())
            elif self._add_clean is not None:  # (clean_record's, inline: every clean test, in the process that reports)
                self._add_clean(item)
                state.record = item
                if self.junit:
                    item.user_properties.extend(self._clean_properties)
                return
            else:
                record = clean_record(item.nodeid)
        else:
            doctest = _doctest_of(item) is not None  # (read once: the record and the failure's text both say it)
            baseline = self.outputs.baseline if not self.outputs.update else None
            if baseline is not None:
                grown = baseline_mod.grown(item.nodeid, verdict.counts, baseline)
            record = test_record(item.nodeid, verdict, grown, self.controller.format_origin, time.time(),
                                 self.controller.fd_sample() if self.sampling else None,
                                 locate=self.controller.locate_origin,
                                 location=_test_location(item) if grown or not verdict.clean else None,
                                 doctest=doctest)
        if self.reporter is not None:  # this process reports
            self.reporter.results.add_local(record)
        # kept until the test's teardown report is made: an xdist worker's _RecordCarrier puts it on the report,
        # and pytest-html's rows (reporting/pytest_html.py) read its counts
        state.record = record
        if self.junit:  # pytest keeps every item for the whole run: only pay for properties someone reads
            item.user_properties.extend((f"sockhygiene_{k}", int(verdict.counts[k])) for k in KINDS
                                        if verdict.counts[k] is not None)  # unmeasured: no property
        if verdict is CLEAN or (verdict.clean and not grown) or not report:
            return
        text = failure_text(item.nodeid, verdict, self.controller.format_origin, grown, doctest=doctest)
        if state.called:
            text += _failed_note(verdict, state)
        if self.enforce:
            failure = pytest.fail.Exception(text, pytrace=False)
            self._keep_failure(item, failure)
            raise failure
        path, lineno = _location(item)
        warn_without_failing(text, path, lineno)  # never an error, unless -W error::...SockHygieneWarning

    def _limits_added_since(self, item: pytest.Item, state: _ItemState, report: bool) -> bool:
        """Apply the ``sockhygiene`` markers added to the test after its setup began (``request.node.add_marker``
        in a fixture, or in the test) on top of its limits, as markers set before are (and as the fixture's
        ``set_limits`` is, which they compose with). False for a bad one, after failing the test as a bad marker
        fails it at setup (it passed, silently unchecked, with a typo): the window is dropped, with no limits to
        judge it by."""
        added = [(m.args, m.kwargs) for m in item.own_markers[state.marks:] if m.name == "sockhygiene"]
        state.marks = len(item.own_markers)
        if not added:
            return True
        assert state.limits is not None
        try:
            state.limits = marker_limits(state.limits, item.nodeid, added[::-1])  # (closest - the latest - first)
            return True
        except ConfigError as e:
            bad = f"{e} (a marker added after the setup began)"
        self.controller.abandon_window()
        if report:  # failed outside the except block: the message is shown once, not twice
            pytest.fail(bad, pytrace=False)
        return False

    def _keep_failure(self, item: pytest.Item, failure: BaseException) -> None:
        """Make sure this teardown failure is reported as one, even for an xfail test (see ``_KeepFailure``).
        Armed only on a violation, so the clean path has no hook of it."""
        try:
            keeper = self.config.pluginmanager.get_plugin(_KeepFailure.NAME)
            if keeper is None:
                keeper = _KeepFailure(self.config.pluginmanager,
                                      self.reporter.results if self.reporter is not None else None)
                self.config.pluginmanager.register(keeper, _KeepFailure.NAME)
            keeper.pending[item] = failure
        except Exception as e:  # noqa: BLE001 - the failure is raised all the same
            self.controller.problem(f"keeping the failure of {item.nodeid}", e)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Test files collected from where libraries live (``pytest --pyargs`` on an installed package's tests)
        are the user's code: their lines are the origins, not "library code"."""
        try:
            files = {str(getattr(item, "path", None) or item.fspath) for item in session.items}
            loaded = (str(getattr(p, "__file__", "")) for p in session.config.pluginmanager.get_plugins())
            files.update(f for f in loaded if f.endswith("conftest.py"))
            installed = origin_mod.library_files(files)
            if installed:
                origin_mod.add_user_files(installed)
        except Exception as e:  # noqa: BLE001
            self.controller.problem("reading where the collected tests live", e)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        last = self.current
        if last is not None and last.window:
            # an interrupted test (Ctrl-C) is torn down by pytest's own session-end teardown, next: judge it now,
            # without failing anything, so that its check cannot raise from inside that teardown
            self.interrupted.append(last.item.nodeid)
            self._judge(last.item, last, report=False)

    def collect_health(self) -> None:
        """This process's health, taken once every fixture has been torn down (``_SessionEnd``)."""
        if self.config.pluginmanager.has_plugin("dsession"):
            return  # an xdist controller runs no test: the health of the run comes from its workers
        if not self.controller.ensure_started():
            health = {"notices": list(self.controller.notices), "problems": list(self.controller.problems)}
        else:
            health = self.controller.health()
        health["interrupted"] = list(self.interrupted)
        workeroutput = getattr(self.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["sockhygiene"] = health
        elif self.reporter is not None:
            self.reporter.results.add_process_health(health)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Start before collection (so a client created when a test module is imported is tracked), except
        on an xdist controller, which runs no test."""
        if not self.config.pluginmanager.has_plugin("dsession"):
            self.controller.ensure_started()
            recorder = self.controller.recorder
            if recorder is not None:
                recorder.ownership.kept_tracebacks = self._kept_tracebacks

    def _kept_tracebacks(self) -> Kept:
        """What pytest keeps for the test being judged that can hold a traceback: its log records, and its call's
        exception where that is the failure its xfail marker expects (asked only about a socket the test would be
        blamed for: ``logheld.py``)."""
        state = self.current
        if state is None:
            return Kept([])
        return Kept(captured_records(state.item), _expected_failure_of(state))

    def pytest_report_header(self, config: pytest.Config) -> str:
        return f"sockhygiene: mode={self.controller.settings.mode}, backend={self.controller.backend_label()}"

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.controller.stop()


class _SessionEnd:
    """Takes the process's health after pytest's own session-end teardown, which tears down what an interrupted
    run (``-x``, ``--maxfail``, Ctrl-C) left set up: checked any earlier, a session fixture's server that is
    about to be closed would be reported as a session-level leak."""

    def __init__(self, plugin: SockHygienePlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.plugin.collect_health()


class _KeepFailure:
    """Keeps a hygiene failure a failure when the test is marked xfail, and shown when another error took its
    place in the teardown's report.

    pytest's skipping plugin turns *any* exception of an xfail test into "xfailed", a teardown's included (its
    ``pytest_runtest_makereport`` wrapper): a leak of an xfail test would read XFAIL and disappear, whatever the
    test's own outcome. The leak is not the failure the marker expects, so this outer wrapper gives the teardown
    report back its failed outcome when the exception is the plugin's own. Registered only while a failure is
    pending (a hook wrapper on every test's three reports would cost every test), unregistered once it is done.
    """

    NAME = PLUGIN_NAME + "-keep-failure"

    def __init__(self, pluginmanager: pytest.PytestPluginManager, results: SessionResults | None) -> None:
        self.pluginmanager = pluginmanager
        self.pending: dict[pytest.Item, BaseException] = {}
        self.results = results
        """Where a failure that stands is noted (``SessionResults.stands``): None where no records are kept (an
        xdist worker: the controller notes it from the report, ``_RecordsFromWorkers``)."""
        self.made: set[str] = set()
        """Tests whose failure's teardown report is made and not yet logged."""

    def _done(self) -> None:
        if not self.pending and not self.made:
            self.pluginmanager.unregister(self)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
        report = yield
        failure = self.pending.get(item) if call.when == "teardown" else None
        if failure is None:
            return report
        del self.pending[item]
        if self.results is not None:
            self.made.add(item.nodeid)
        self._done()
        raised = call.excinfo.value if call.excinfo is not None else None
        ours = raised is failure or failure in getattr(raised, "exceptions", ())  # alone, or in a group
        if ours and report.skipped and hasattr(report, "wasxfail"):
            report.outcome = "failed"  # the longrepr is still the failure's: skipping only relabels the outcome
            del report.wasxfail
        elif not ours and report.failed:
            # another error took its place: pytest's unittest plugin hands each phase's report the next error the
            # TestCase recorded (a test and its tearDown that both failed; Twisted's trial records two for a dirty
            # reactor), and the teardown's got the second - the violation was shown nowhere but in the summary's
            # counts (treq). That error stays the report's; the violation is shown beside it, as a section.
            report.sections.append(("sockhygiene: broke its socket limits", str(failure)))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """The teardown report of a failure is logged: as a failure, it stands in the run's result even if the
        test is run again (flaky), unlike one a rerun plugin logs as ``rerun`` (pytest-rerunfailures). Any
        teardown report ends the wait: one never logged (a plugin that drops it) is not waited for past it."""
        if report.when != "teardown" or not self.made:
            return
        if report.nodeid in self.made and report.failed and self.results is not None:
            self.results.stands(report.nodeid)
        self.made.clear()
        self._done()


class _RecordCarrier:
    """On an xdist worker: puts each test's record on its teardown report, which xdist serialises to the
    controller like any report attribute (registered only on workers: a plain run hands records over directly)."""

    def __init__(self, plugin: SockHygienePlugin) -> None:
        self.plugin = plugin

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "teardown":
            state = self.plugin.current
            if state is not None and state.item is item and state.record is not None:
                # pytest keeps every item for the whole run: hand the record on instead of keeping it
                report.sockhygiene, state.record = full_record(state.record), None
        return report


class _ForkedChildren:
    """With pytest-forked, a test (``--forked``, or marked ``forked``) runs in a child process, and its record would
    die with the child: the child puts it on its teardown report, which pytest-forked sends to this process as
    plain values, and here it is taken off and kept. In warn mode the warning is made here too: the child's went to
    the child's output, which nobody sees. (Enforce mode's failure travels on the report itself.) Registered only
    where pytest-forked is, in the process that reports; on an xdist worker ``_RecordCarrier`` carries the record
    from the child on, as from any test."""

    def __init__(self, plugin: SockHygienePlugin, results: SessionResults, rootdir: str) -> None:
        self.plugin = plugin
        self.results = results
        self.rootdir = rootdir
        self.pid = os.getpid()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "teardown" and os.getpid() != self.pid:  # in a forked child
            state = self.plugin.current
            if state is not None and state.item is item and state.record is not None:
                record = full_record(state.record)
                # (a plain run keeps a clean test's record as its item: the child sends its node id)
                report.sockhygiene_forked = record if isinstance(record, (dict, tuple, list, str)) else item.nodeid
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown" or os.getpid() != self.pid:
            return
        record = report.__dict__.pop("sockhygiene_forked", None)
        if not isinstance(record, (dict, tuple, list, str)):
            return
        self.results.add(record)
        if isinstance(record, dict) and not record.get("clean", True) and not self.plugin.enforce:
            from .reporting.records import text_of

            rel, lineno = _file_and_line(report.location)
            warn_without_failing(text_of(record), os.path.normpath(os.path.join(self.rootdir, rel)), lineno)


class _ForkedMarked:
    """pytest-forked installed without ``--forked``: ``_ForkedChildren`` is registered once collection shows a test
    marked ``forked`` (its hooks run at every test: a run that forks none pays nothing)."""

    def __init__(self, forked: _ForkedChildren) -> None:
        self.forked = forked

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if any_marked(session.items, "forked"):
            session.config.pluginmanager.register(self.forked, PLUGIN_NAME + "-forked")


class _RecordsFromWorkers:
    """On an xdist controller: takes each test's record off the teardown reports the workers send."""

    def __init__(self, results: SessionResults) -> None:
        self.results = results

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        # taken off the report: pytest keeps every report until the end of the run
        record = report.__dict__.pop("sockhygiene", None)
        if isinstance(record, (dict, tuple, list, str)):
            self.results.add(record)
            if report.failed:  # logged as a failure, not as a rerun: it stands (``SessionResults.stands``)
                self.results.stands(report.nodeid)


class _FinishedBodies:
    """With ``--sockhygiene-baseline-update`` or ``--sockhygiene-report``, in the process that reports: the tests
    whose call phase passed, from a plain run's own reports or the ones xdist workers send. Only these update
    their baseline entry (see ``baseline.updated``), and the report says which they are, so that a baseline
    written from it later (``python -m pytest_sockhygiene baseline``) leaves out the skipped and failed ones too.
    Registered only then: other runs pay nothing per report."""

    def __init__(self) -> None:
        self.finished: set[str] = set()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            if report.passed:
                self.finished.add(report.nodeid)
            else:  # a rerun (pytest-rerunfailures) that failed after one that passed
                self.finished.discard(report.nodeid)


class SockHygieneReporter:
    """The run's reporting: collects per-test records from reports (local or from xdist workers) and each
    process's health, then prints the summary, writes the JSON report and the baseline."""

    def __init__(self, config: pytest.Config, outputs: Outputs) -> None:
        self.config = config
        self.outputs = outputs
        self.results = SessionResults()
        # the same test file given twice keeps its tests twice, under one node id each
        self.results.repeats = bool(config.getoption("keepduplicates", False))
        self.bodies = _FinishedBodies() if outputs.update or outputs.report else None
        self.write_errors: list[str] = []

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.pluginmanager.has_plugin("dsession"):  # xdist's controller: records come from workers
            self.config.pluginmanager.register(_RecordsFromWorkers(self.results), PLUGIN_NAME + "-from-workers")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        health = getattr(node, "workeroutput", {}).get("sockhygiene")
        if isinstance(health, dict):
            self.results.add_process_health(health)

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, Any, Any]:
        """After every plain hook (so after the fixtures' teardown and the health check), before the terminal
        summary is printed (a trylast wrapper is the first to resume)."""
        try:
            return (yield)
        finally:
            self._finish(session)

    def _finish(self, session: pytest.Session) -> None:
        # (no tracker of finished bodies: neither a report nor a baseline is written, so none is read)
        finished = self.bodies.finished if self.bodies is not None else set()
        try:
            self.results.keep_last_attempts()  # pytest-rerunfailures: a test's last attempt is the test's
        except Exception as e:  # noqa: BLE001
            self.results.problems.append(f"keeping each test's last attempt: {e!r}")
        try:
            self.write_errors = write_outputs(self.outputs, lambda: self.results.document(finished),
                                             lambda: self.results.records, finished)
        except Exception as e:  # noqa: BLE001  (an OSError is in write_errors: this is a fault of the plugin)
            self.results.problems.append(f"writing sockhygiene output: {e!r}")
        html = self.config.stash[_CI_KEY].html
        if html:
            from .reporting.html import write_page

            try:
                write_page(html, self.results.document())
            except OSError as e:
                self.write_errors.append(f"--sockhygiene-html: the page could not be written to {html!r}: "
                                         f"{e.strerror or e}")
            except Exception as e:  # noqa: BLE001
                self.results.problems.append(f"writing the sockhygiene HTML page: {e!r}")
        enforce = self.config.stash[_SETTINGS_KEY].mode == "enforce"
        # a file that cannot be written fails the run in either mode, as --junitxml's does: never lost silently
        if session.exitstatus == pytest.ExitCode.OK and (self.write_errors or (enforce and self.results.leaks)):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        r = self.results
        if not (r.checked or r.notices or r.problems or r.leaks or r.interrupted or self.write_errors):
            return
        # write_sep, as pytest's own summary sections: it ends the last progress line first, so the blank line
        # falls before the section's title, not between the title and its first line
        tr.write_sep("=", "socket hygiene")
        for line in summary_lines(r, verbose=self.config.getoption("verbose") > 0):
            tr.write_line(line)
        if self.config.stash[_CI_KEY].annotate:  # GitHub reads workflow commands from the log: the real stdout
            enforce = self.config.stash[_SETTINGS_KEY].mode == "enforce"
            for line in workflow_commands(r.dirty, r.leaks, enforce=enforce):
                tr.write_line(line)
        for error in self.write_errors:
            tr.write_line(f"ERROR: sockhygiene: {error} (this fails the run, as --junitxml does)", red=True)
        if self.outputs.report and not any(e.startswith("--sockhygiene-report") for e in self.write_errors):
            tr.write_line(f"report: {self.outputs.report}")
        if self.config.stash[_CI_KEY].html and not any(e.startswith("--sockhygiene-html") for e in self.write_errors):
            tr.write_line(f"html: {self.config.stash[_CI_KEY].html}")
        if r.problems:
            tr.write_line(f"{plural(len(r.problems), 'plugin problem')} - a fault of pytest-sockhygiene "
                          "(or of a tracker plugin), not of your tests; please report it:", red=True)
            for p in r.problems[:5]:
                tr.write_line(p)


# -- the fixture ---------------------------------------------------------------------------------------------


@pytest.fixture
def sockhygiene(request: pytest.FixtureRequest) -> Generator[Any, None, None]:
    """The current test's socket tracker: ``snapshot()``, ``measure()``, ``set_limits(...)``."""
    from .fixture import SockHygiene

    config = request.config
    item = request.node
    plugin: SockHygienePlugin | None = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if plugin is not None:
        controller = plugin.controller
    else:
        # mode off: a private controller for this test, so measure() and snapshot() still work
        controller = Controller(config.stash[_SETTINGS_KEY], str(config.rootpath))
        request.addfinalizer(controller.stop)
    state = plugin.current if plugin is not None else None
    if state is None or state.item is not item or state.limits is None:
        state = _ItemState(item, controller.limits_for(item.nodeid, _markers(item)))
        if plugin is not None:
            plugin.current = state

    def get_limits() -> Limits:
        assert state is not None and state.limits is not None
        return state.limits

    def set_limits(limits: Limits) -> None:
        assert state is not None
        state.limits = limits

    hygiene = SockHygiene(controller, item.nodeid, get_limits, set_limits)
    yield hygiene
    hygiene._end()  # kept past its test (in a global, a class attribute), it says so instead of doing nothing
