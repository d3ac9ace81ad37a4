"""Warnings set off by the plugin's own work are shown, never raised as errors.

The check collects garbage on purpose (``Window.close``), and describing who replaced a socket hook walks every
module, which may set off a collection. A socket the user left in a reference cycle warns (ResourceWarning) as a
collection frees it; under ``filterwarnings = error`` that warning is an error inside a finalizer, which pytest
reports as an error of the test whose phase is running - made by the plugin, in warn mode too. Without the plugin
the collector would free it some time later, anywhere. So wherever an ``error`` filter is in force, the check and
the description run under ``shown_not_raised``: the warning is shown instead, and the user still sees it.

A ResourceWarning such a collection sets off carries the location of the line that was running: a file of the
plugin's (``window.py``, where the check collects). A user reading "unclosed <socket.socket ...>" at
``pytest_sockhygiene/window.py`` blames the plugin for the socket. ``shown_not_raised(place=...)`` moves it to a
line of the user's: the one that opened the socket, where the check knows it, else the test's. Only when such a
warning can be shown at all (Python ignores ResourceWarning by default): otherwise nothing is recorded.

No pytest here: the command line (``python -m pytest_sockhygiene``) reads reports without importing pytest, and
the modules it reaches import this one.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from typing import Callable, Optional

Place = Callable[[warnings.WarningMessage], Optional[tuple[str, int]]]
"""Where a ResourceWarning set off inside the plugin should point instead: (filename, line), or None to leave it."""

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def error_filter_in_force() -> bool:
    """Whether a warning filter now turns some warning into an error: the one case ``shown_not_raised`` changes
    anything."""
    for f in warnings.filters:  # noqa: SIM110 - (no generator frame: asked at every check past the quick look)
        if f[0] == "error":
            return True
    return False


def _resource_warnings_shown() -> bool:
    """Whether the filters in force may show a ResourceWarning (Python's defaults ignore it; ``-W default``,
    ``-X dev`` or a suite's ``filterwarnings`` show it). In doubt (a filter with a message or module pattern), yes."""
    for f in warnings.filters:
        action, message, category, module = f[0], f[1], f[2], f[3]
        if not issubclass(ResourceWarning, category):
            continue
        if action != "ignore":
            return True
        if message is None and module is None:
            return False  # the first filter for every ResourceWarning ignores it
    return False


def _in_plugin(filename: str) -> bool:
    """A file of this package's (the location a warning set off by the plugin's own work carries)."""
    directory = os.path.dirname(os.path.abspath(filename))
    return directory == _PACKAGE_DIR or directory.startswith(_PACKAGE_DIR + os.sep)


@contextlib.contextmanager
def shown_not_raised(place: Place | None = None) -> Iterator[None]:
    """Warnings raised inside are shown as they are, never raised (the module's docstring says why). Every other
    action of the filters holds: what they ignore (ResourceWarning, by Python's defaults) stays ignored. With no
    ``error`` filter in force (most runs) there is nothing to change.

    ``place``: a ResourceWarning whose location is a file of the plugin's is shown at the line ``place`` gives
    (``Window.close``: the user's line that opened the socket, else the test's)."""
    error = error_filter_in_force()
    relocate = place is not None and _resource_warnings_shown()
    if not error and not relocate:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        # (catch_warnings restores the list on exit; the caches of "once" and "default" are told it changed)
        if error:
            warnings.filters = [("always", *f[1:]) if f[0] == "error" else f for f in warnings.filters]
            mutated = (getattr(warnings, "_filters_mutated", None)
                       or getattr(warnings, "_filters_mutated_lock_held", None))
            if mutated is not None:
                mutated()
        yield
    show = getattr(warnings, "_showwarnmsg", None)  # what a warning that is simply shown goes through
    for message in caught:
        if place is not None and issubclass(message.category, ResourceWarning) and _in_plugin(message.filename):
            try:
                where = place(message)
            except Exception:  # noqa: BLE001 - a location must never cost the user the warning
                where = None
            if where is not None:
                message.filename, message.lineno = where
                message.line = None  # (read again from the new file when shown)
        if show is not None:
            show(message)
        else:  # (no such private function: the public display)
            warnings.showwarning(message.message, message.category, message.filename, message.lineno,
                                 message.file, message.line)
