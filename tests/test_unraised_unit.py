"""Unit tests of unraised.py: warnings the plugin's own work sets off are shown, never raised, and a ResourceWarning
located in the plugin's files is moved to the line ``place`` gives. The warnings are raised with
``warnings.warn_explicit`` at a file of the package, which is where a collection the check runs makes them appear
(the end-to-end case, a real socket freed by the check's collection, is in test_outcomes.py)."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from typing import Any

import pytest

import pytest_sockhygiene.window as window_module
from pytest_sockhygiene.unraised import (
    FilterFacts,
    _resource_warnings_shown,
    filter_facts,
    resource_warnings_raised,
    shown_not_raised,
)

PLUGIN_FILE = os.path.abspath(window_module.__file__)


def _warn_at(filename: str, category: type[Warning] = ResourceWarning) -> None:
    warnings.warn_explicit("unclosed <socket.socket fd=9>", category, filename, 123)


@pytest.mark.parametrize(("question", "filters", "answer"), [
    (_resource_warnings_shown, [("ignore", ResourceWarning)], False),
    (_resource_warnings_shown, [("default", ResourceWarning)], True),
    (_resource_warnings_shown, [("always", Warning)], True),
    (_resource_warnings_shown, [("ignore", Warning)], False),
    (resource_warnings_raised, [("error", Warning)], True),
    (resource_warnings_raised, [("error", ResourceWarning)], True),
    (resource_warnings_raised, [("default", ResourceWarning), ("error", Warning)], False),
    (resource_warnings_raised, [("error", DeprecationWarning)], False),
])
def test_what_the_filters_do_with_a_resource_warning(question, filters, answer):
    """Whether one can be shown at all (``_resource_warnings_shown``), and whether it is raised as an error
    (``resource_warnings_raised``: the check then collects no garbage)."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category in reversed(filters):
            warnings.simplefilter(action, category)
        assert question() is answer


def test_an_ignore_filter_with_a_pattern_leaves_the_question_open():
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default", ResourceWarning)
        warnings.filterwarnings("ignore", message="unclosed transport", category=ResourceWarning)
        assert _resource_warnings_shown() is True


@pytest.mark.parametrize(("filters", "facts"), [
    # (first filter first) an error filter for another category after the one that decides ResourceWarning
    ([("ignore", ResourceWarning, None), ("error", DeprecationWarning, None)], FilterFacts(True, False, False)),
    # a pattern filter leaves both questions open: the next filter decides them
    ([("error", ResourceWarning, "unclosed transport"), ("default", Warning, None)], FilterFacts(True, True, True)),
    ([("ignore", ResourceWarning, "unclosed"), ("error", Warning, None)], FilterFacts(True, True, True)),
    ([("default", ResourceWarning, None), ("error", ResourceWarning, None)], FilterFacts(True, False, True)),
    ([("ignore", UserWarning, None)], FilterFacts(False, False, False)),
])
def test_one_walk_answers_all_three_questions(filters, facts):
    """``filter_facts`` walks the filters once for what three walks answered: each answer as its own walk gave it."""
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category, message in reversed(filters):
            warnings.filterwarnings(action, message=message or "", category=category)
        assert filter_facts() == facts


def test_a_resource_warning_in_the_plugin_is_moved_to_the_place_given():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
            _warn_at("/elsewhere/lib.py")  # not the plugin's line: left where it is
            _warn_at(PLUGIN_FILE, UserWarning)  # not a ResourceWarning: left where it is
    assert [(w.filename, w.lineno, w.category) for w in shown] == [
        ("/src/test_x.py", 7, ResourceWarning),
        ("/elsewhere/lib.py", 123, ResourceWarning),
        (PLUGIN_FILE, 123, UserWarning),
    ]


def test_no_place_or_a_failing_place_keeps_the_warning_where_it_was():
    def broken(message: object) -> tuple[str, int]:
        raise RuntimeError("a location must never cost the user the warning")

    for place in (lambda message: None, broken):
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            with shown_not_raised(place):
                _warn_at(PLUGIN_FILE)
        assert [(w.filename, w.lineno) for w in shown] == [(PLUGIN_FILE, 123)]


def test_under_an_error_filter_the_warning_is_shown_and_moved_not_raised(monkeypatch):
    """With only the interpreter's own unraisable hook (no pytest's) nobody else would report it: shown."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
        with pytest.raises(ResourceWarning):  # outside, the user's filter holds
            _warn_at(PLUGIN_FILE)
    assert [(w.filename, w.lineno) for w in shown] == [("/src/test_x.py", 7)]


def test_under_an_error_filter_a_freed_objects_warning_goes_to_the_unraisable_hook(monkeypatch):
    """A ResourceWarning a collection inside the plugin set off (an object the user left in a cycle) would be an
    error raised in its finalizer: it goes where that goes, the unraisable hook (pytest's makes it the error of the
    running phase, as a collection anywhere else would), neither raised into the plugin nor shown and lost (found
    with litestar's suite: a failing run passed). The plugin's other warnings are still shown, not raised."""
    hooked: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", hooked.append)
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
            _warn_at(PLUGIN_FILE, UserWarning)  # the plugin's own: shown
            # a collection set off inside a library the plugin called (psutil's scan, in anyio's suite): the same
            _warn_at("/elsewhere/lib.py")
    assert [(w.filename, w.category) for w in shown] == [(PLUGIN_FILE, UserWarning)]
    assert len(hooked) == 2
    for args in hooked:
        assert args.exc_type is ResourceWarning and str(args.exc_value) == "unclosed <socket.socket fd=9>"
        assert args.err_msg is None and args.exc_traceback is None


def _in_a_thread(fn: Any) -> BaseException | None:
    raised: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001
            raised.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return raised[0] if raised else None


def test_other_threads_warnings_are_not_the_plugins(monkeypatch):
    """The filters are the process's, and the check settles while the test's other threads go on: a warning one
    of them sets off meanwhile is raised there where an ``error`` filter says so, a freed object's goes to the
    unraisable hook from there (found with anyio's suite: a collection in a timer's thread during the settle
    was shown, and a suite's own check of unclosed sockets under ``filterwarnings = error`` passed), and any
    other is shown where it went before - never recorded as the plugin's own."""
    hooked: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", hooked.append)
    with warnings.catch_warnings(record=True) as before:  # (what pytest's record of the phase's warnings does)
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", ResourceWarning)
        warnings.simplefilter("always", DeprecationWarning)
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            user = _in_a_thread(lambda: _warn_at("/elsewhere/server.py", UserWarning))
            freed = _in_a_thread(lambda: _warn_at("/usr/lib/python3/threading.py"))
            deprecated = _in_a_thread(lambda: _warn_at("/elsewhere/server.py", DeprecationWarning))
            _warn_at(PLUGIN_FILE, UserWarning)  # the plugin's own thread: shown, not raised
    assert isinstance(user, UserWarning)
    assert freed is None and deprecated is None
    (args,) = hooked
    assert args.exc_type is ResourceWarning
    assert [(w.filename, w.category) for w in before] == [("/elsewhere/server.py", DeprecationWarning),
                                                         (PLUGIN_FILE, UserWarning)]



def test_ignored_resource_warnings_stay_ignored():
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        warnings.simplefilter("ignore", ResourceWarning)
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
    assert shown == []
