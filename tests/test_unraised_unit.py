"""Unit tests of unraised.py: warnings the plugin's own work sets off are shown, never raised, and a ResourceWarning
located in the plugin's files is moved to the line ``place`` gives. The warnings are raised with
``warnings.warn_explicit`` at a file of the package, which is where a collection the check runs makes them appear
(the end-to-end case, a real socket freed by the check's collection, is in test_outcomes.py)."""

from __future__ import annotations

import os
import warnings

import pytest

import pytest_sockhygiene.window as window_module
from pytest_sockhygiene.unraised import _resource_warnings_shown, shown_not_raised

PLUGIN_FILE = os.path.abspath(window_module.__file__)


def _warn_at(filename: str, category: type[Warning] = ResourceWarning) -> None:
    warnings.warn_explicit("unclosed <socket.socket fd=9>", category, filename, 123)


@pytest.mark.parametrize(("filters", "shown"), [
    ([("ignore", ResourceWarning)], False),
    ([("default", ResourceWarning)], True),
    ([("always", Warning)], True),
    ([("ignore", Warning)], False),
])
def test_whether_a_resource_warning_can_be_shown(filters, shown):
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for action, category in reversed(filters):
            warnings.simplefilter(action, category)
        assert _resource_warnings_shown() is shown


def test_an_ignore_filter_with_a_pattern_leaves_the_question_open():
    with warnings.catch_warnings():
        warnings.resetwarnings()
        warnings.simplefilter("default", ResourceWarning)
        warnings.filterwarnings("ignore", message="unclosed transport", category=ResourceWarning)
        assert _resource_warnings_shown() is True


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


def test_under_an_error_filter_the_warning_is_shown_and_moved_not_raised():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("error")
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
        with pytest.raises(ResourceWarning):  # outside, the user's filter holds
            _warn_at(PLUGIN_FILE)
    assert [(w.filename, w.lineno) for w in shown] == [("/src/test_x.py", 7)]


def test_ignored_resource_warnings_stay_ignored():
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        warnings.simplefilter("ignore", ResourceWarning)
        with shown_not_raised(lambda message: ("/src/test_x.py", 7)):
            _warn_at(PLUGIN_FILE)
    assert shown == []
