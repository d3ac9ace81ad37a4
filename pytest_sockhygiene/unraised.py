"""Warnings set off by the plugin's own work are shown, never raised as errors.

The check collects garbage on purpose (``Window.close``), and describing who replaced a socket hook walks every
module, which may set off a collection. A socket the user left in a reference cycle warns (ResourceWarning) as a
collection frees it; under ``filterwarnings = error`` that warning is an error inside a finalizer, which pytest
reports as an error of the test whose phase is running - made by the plugin, in warn mode too. Without the plugin
the collector would free it some time later, anywhere. So wherever an ``error`` filter is in force, the check and
the description run under ``shown_not_raised``: the warning is shown instead, and the user still sees it.

No pytest here: the command line (``python -m pytest_sockhygiene``) reads reports without importing pytest, and
the modules it reaches import this one.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


def error_filter_in_force() -> bool:
    """Whether a warning filter now turns some warning into an error: the one case ``shown_not_raised`` changes
    anything."""
    for f in warnings.filters:  # noqa: SIM110 - (no generator frame: asked at every check past the quick look)
        if f[0] == "error":
            return True
    return False


@contextlib.contextmanager
def shown_not_raised() -> Iterator[None]:
    """Warnings raised inside are shown as they are, never raised (the module's docstring says why). Every other
    action of the filters holds: what they ignore (ResourceWarning, by Python's defaults) stays ignored. With no
    ``error`` filter in force (most runs) there is nothing to change."""
    if not error_filter_in_force():
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        # (catch_warnings restores the list on exit; the caches of "once" and "default" are told it changed)
        warnings.filters = [("always", *f[1:]) if f[0] == "error" else f for f in warnings.filters]
        mutated = getattr(warnings, "_filters_mutated", None) or getattr(warnings, "_filters_mutated_lock_held", None)
        if mutated is not None:
            mutated()
        yield
    show = getattr(warnings, "_showwarnmsg", None)  # what a warning that is simply shown goes through
    if show is not None:
        for message in caught:
            show(message)

