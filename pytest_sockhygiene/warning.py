"""The warning class users filter on (``-W error::pytest_sockhygiene.SockHygieneWarning``), and how warn mode
emits it without failing the test.

Warn mode promises that the run's outcome does not change. Many suites turn every warning into an error
(``filterwarnings = error`` in the ini file, ``-W error``): emitted plainly, each violation would then become a
test error, the opposite of the promise. So a blanket ``error`` filter is not obeyed for this warning; only a
filter that names ``SockHygieneWarning`` itself is (the user asked for these to fail, by name). Every other
action of the user's filters (``ignore``, ``once``, ``default``, ...) applies as usual.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest


class SockHygieneWarning(pytest.PytestWarning):
    """A test broke its socket limits while the plugin runs in ``warn`` mode."""


def _matches(pattern: Any, text: str) -> bool:
    if pattern is None:
        return True
    if isinstance(pattern, str):  # filters added by hand can hold plain strings
        pattern = re.compile(pattern)
    return bool(pattern.match(text))


def _named(category: Any) -> bool:
    return isinstance(category, type) and issubclass(category, SockHygieneWarning)


def action_for(text: str, module: str, lineno: int) -> str:
    """The action warn mode takes for a :class:`SockHygieneWarning` with this text at ``module:lineno``: that of
    the first of ``warnings.filters`` that matches it (the warnings module's own test), passing over ``error``
    filters that do not name ``SockHygieneWarning`` (or a subclass of it); the default action if none is left.
    So ``-W error`` and ``filterwarnings = error`` show the warning, an ``ignore`` filter still hides it, and
    ``-W error::pytest_sockhygiene.SockHygieneWarning`` makes it an error."""
    for entry in list(warnings.filters):
        try:
            action, message, category, mod, ln = entry
            # the category first: most filters are for other warnings (DeprecationWarning, ResourceWarning, ...),
            # and a failed issubclass skips them without the two pattern matches
            if not (issubclass(SockHygieneWarning, category) and _matches(message, text) and _matches(mod, module)
                    and (ln == 0 or ln == lineno)):
                continue
        except (TypeError, ValueError):  # a malformed entry: not ours to judge
            continue
        if action != "error" or _named(category):
            return str(action)
    default = str(getattr(warnings, "defaultaction", "default"))  # not in typeshed, always in CPython
    return "default" if default == "error" else default


_SHOWN = frozenset({"default", "always", "module"})
"""Actions under which ``warn_explicit`` with no registry shows the warning every time: shown directly. ``error``
(named), ``once`` (a process-wide registry) and anything unexpected go through ``warn_explicit`` itself."""


def warn_without_failing(text: str, filename: str, lineno: int) -> None:
    """Emit a :class:`SockHygieneWarning` at ``filename:lineno`` with the action :func:`action_for` chose. Called
    inside pytest's per-test ``catch_warnings``: a shown warning lands in the warnings summary. A warning that is
    simply shown goes to the display directly; any other action (``once``, a named ``error``) through
    ``warn_explicit`` under a temporary filter, gone with its block."""
    module = filename[:-3] if filename.lower().endswith(".py") else filename  # what warn_explicit matches on
    action = action_for(text, module, lineno)
    if action == "ignore":
        return
    message = SockHygieneWarning(text)
    show = getattr(warnings, "_showwarnmsg", None)
    if action in _SHOWN and show is not None:
        # what warn_explicit does for these actions when given no registry (each text names its test): hand the
        # warning to whoever shows or records it (pytest's per-test catch_warnings). Without the temporary filter
        # and the catch_warnings block around it, which also invalidate every module's warning registry: a
        # violating test pays for one call, not for two filter-list copies and a filter lookup
        show(warnings.WarningMessage(message, SockHygieneWarning, filename, lineno))
        return
    with warnings.catch_warnings():
        warnings.filterwarnings(action, category=SockHygieneWarning)  # type: ignore[arg-type]
        warnings.warn_explicit(message, SockHygieneWarning, filename, lineno)
