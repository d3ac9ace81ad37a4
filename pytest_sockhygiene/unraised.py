"""Warnings set off by the plugin's own work are shown, never raised as errors.

The check collects garbage on purpose (``Window.close``), and describing who replaced a socket hook walks every
module, which may set off a collection. A socket the user left in a reference cycle warns (ResourceWarning) as a
collection frees it; under ``filterwarnings = error`` that warning is an error inside a finalizer, which pytest
reports as an error of the test whose phase is running. Without the plugin the collector would free it some time
later, anywhere - in a later test that fails for it (litestar's suite), or never during the run (urllib3's). So
where ResourceWarning is an error (``resource_warnings_raised``), the check collects nothing: the outcome stays
the run's without the plugin, and an unclosed socket held by garbage is the test's leak, as it is. Wherever an
``error`` filter is in force, the check and the description also run under ``shown_not_raised``: a warning the
plugin's own work sets off is shown, not raised into its code; a ResourceWarning of an object an automatic
collection freed there goes where an exception in a finalizer goes, ``sys.unraisablehook`` (pytest's makes it
the same error it is when the collector runs anywhere else), not into the plugin's code and not missing - wherever
the collection was set off: in the plugin's lines or in a library's it called (psutil's scan). The filters are the
process's, so only the plugin's own thread is treated so: what the test's other threads warn meanwhile (the check
settles for up to half a second while they run) is raised in them, or shown, as the filters in force say.

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
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, Callable, NamedTuple, Optional

Place = Callable[[warnings.WarningMessage], Optional[tuple[str, int]]]
"""Where a ResourceWarning set off inside the plugin should point instead: (filename, line), or None to leave it."""

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


class FilterFacts(NamedTuple):
    """What the warning filters in force say, as far as the check is concerned (``filter_facts``)."""

    error: bool
    """Some filter turns some warning into an error: the one case ``shown_not_raised`` changes anything."""
    resource_raised: bool
    """A ResourceWarning is raised as an error (``filterwarnings = error``, ``-W error::ResourceWarning``): the
    check then collects no garbage. An unclosed socket its collection freed would warn, and that error would land
    on the test being checked - or, shown instead, go missing - where without the plugin it lands wherever the
    collector next runs. In doubt (an ``error`` filter for it with a message or module pattern, before any other),
    yes."""
    resource_shown: bool
    """A ResourceWarning may be shown (Python's defaults ignore it; ``-W default``, ``-X dev`` or a suite's
    ``filterwarnings`` show it). In doubt (a filter with a message or module pattern), yes."""


def filter_facts() -> FilterFacts:
    """The three answers in one walk over ``warnings.filters`` (asked at every check past the quick look; three
    walks were 5 % of the plugin's bytecodes in a suite of HTTP tests). For a ResourceWarning, the first filter
    that may apply and acts (raises; shows) decides yes, unless a filter that applies to every ResourceWarning (no
    message or module pattern) came first and decided otherwise."""
    error = raised = shown = False
    raised_open = shown_open = True  # (not decided yet)
    for f in warnings.filters:
        action = f[0]
        if action == "error":
            error = True
        if (raised_open or shown_open) and issubclass(ResourceWarning, f[2]):
            if raised_open and action == "error":
                raised = True
                raised_open = False
            if shown_open and action != "ignore":
                shown = True
                shown_open = False
            if f[1] is None and f[3] is None:
                raised_open = shown_open = False  # the first filter for every ResourceWarning decides the rest
        elif error and not raised_open and not shown_open:
            break
    return FilterFacts(error, raised, shown)


def resource_warnings_raised() -> bool:
    """Whether the filters in force turn a ResourceWarning into an error (``FilterFacts.resource_raised``)."""
    return filter_facts().resource_raised


def _resource_warnings_shown() -> bool:
    """Whether the filters in force may show a ResourceWarning (``FilterFacts.resource_shown``)."""
    return filter_facts().resource_shown


class _Unraisable:
    """What ``sys.unraisablehook`` is given (its own type, ``UnraisableHookArgs``, cannot be made from Python):
    the attributes every hook reads, pytest's of each version included."""

    __slots__ = ("err_msg", "exc_traceback", "exc_type", "exc_value", "object")

    def __init__(self, exc_value: BaseException, obj: object) -> None:
        self.exc_type = type(exc_value)
        self.exc_value = exc_value
        self.exc_traceback = None
        self.err_msg = None  # (hooks print "Exception ignored in", as for any finalizer)
        self.object = obj


def _freed_user_object(message: warnings.WarningMessage) -> bool:
    """A ResourceWarning a finalizer set off as a collection during the plugin's work freed an object (an
    unclosed socket or file the user left in a cycle). Its location is the line that was running: the plugin's,
    or a library's the plugin called (an automatic collection inside psutil's scan, found with anyio's suite)."""
    return issubclass(message.category, ResourceWarning)


def _action(filters: Sequence[Any], message: warnings.WarningMessage) -> str:
    """What ``filters`` (as ``warnings.filters`` holds them) do with ``message``: the first that matches it, as
    ``warnings.warn_explicit`` picks, else "default"."""
    text = str(message.message)
    module = message.filename or "<unknown>"  # (the module warn_explicit matches: the file, less ".py")
    if module[-3:].lower() == ".py":
        module = module[:-3]
    for action, msg, category, mod, lineno in filters:
        if ((msg is None or msg.match(text)) and isinstance(category, type) and issubclass(message.category, category)
                and (mod is None or mod.match(module)) and (not lineno or lineno == message.lineno)):
            return str(action)
    return "default"


def _to_unraisable_hook(message: warnings.WarningMessage) -> bool:
    """Hand a warning an ``error`` filter would have raised inside its finalizer to ``sys.unraisablehook``, where
    the interpreter puts an exception raised there: pytest's hook makes it the PytestUnraisableExceptionWarning
    (an error under ``filterwarnings = error``) it is when the collector frees the object anywhere else. Shown
    instead, that error went missing: a suite whose own check failed passed with the plugin (found with
    litestar's suite, an automatic collection set off inside the check). False where only the interpreter's
    default hook listens (it takes nothing but its own argument type): the warning is shown then."""
    hook = sys.unraisablehook
    if hook is sys.__unraisablehook__:
        return False
    try:
        hook(_Unraisable(message.message, message.source))  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a hook that wants the real type: shown instead
        return False
    return True


def _in_plugin(filename: str) -> bool:
    """A file of this package's (the location a warning set off by the plugin's own work carries)."""
    directory = os.path.dirname(os.path.abspath(filename))
    return directory == _PACKAGE_DIR or directory.startswith(_PACKAGE_DIR + os.sep)


def _only_this_thread(in_force: Sequence[Any], error: bool, show_before: Callable[[Any], None]) -> None:
    """Inside ``catch_warnings(record=True)``: record only this thread's warnings. The filters are the process's,
    and the check settles for up to half a second, in which the test's other threads (a server's, a timer's) go
    on: a warning one of them sets off goes where it went before (``show_before``: pytest's record of the
    test's warnings), and is raised in that thread where an ``error`` filter in force says so - from a
    finalizer, that is ``sys.unraisablehook``'s, as without the plugin (an automatic collection in a timer's
    thread during the settle, found with anyio's suite)."""
    record = getattr(warnings, "_showwarnmsg_impl", None)  # (catch_warnings(record=True) set it: the list's append)
    if record is None:  # (no such private name: every thread's warnings are recorded, as before)
        return
    me = threading.get_ident()

    def per_thread(message: warnings.WarningMessage) -> None:
        if threading.get_ident() == me:
            record(message)
        elif error and _action(in_force, message) == "error":
            if _freed_user_object(message) and _to_unraisable_hook(message):
                return  # (straight there: raised from here, its traceback would show this file)
            raised = message.message  # (a Warning instance: what an ``error`` filter raises)
            raise raised if isinstance(raised, Warning) else message.category(raised)
        else:
            show_before(message)

    warnings._showwarnmsg_impl = per_thread  # type: ignore[attr-defined]


def _show_now() -> Callable[[Any], None]:
    """Where a warning shown now goes (``warnings._showwarnmsg`` reads both names when it is called): a replaced
    ``showwarning``, else ``_showwarnmsg_impl`` (pytest's record of the running phase's warnings sets it)."""
    showwarning = warnings.showwarning
    impl = getattr(warnings, "_showwarnmsg_impl", None)
    if showwarning is not getattr(warnings, "_showwarning_orig", None) or impl is None:
        return lambda m: showwarning(m.message, m.category, m.filename, m.lineno, m.file, m.line)
    return impl  # type: ignore[no-any-return]


@contextlib.contextmanager
def shown_not_raised(place: Place | None = None, facts: FilterFacts | None = None) -> Iterator[None]:
    """Warnings raised inside are shown as they are, never raised (the module's docstring says why). Every other
    action of the filters holds: what they ignore (ResourceWarning, by Python's defaults) stays ignored. With no
    ``error`` filter in force (most runs) there is nothing to change.

    ``place``: a ResourceWarning whose location is a file of the plugin's is shown at the line ``place`` gives
    (``Window.close``: the user's line that opened the socket, else the test's). ``facts``: the filters' answers,
    if the caller has just asked them (``filter_facts``)."""
    if facts is None:
        facts = filter_facts()
    error = facts.error
    relocate = place is not None and facts.resource_shown
    if not error and not relocate:
        yield
        return
    in_force = list(warnings.filters)
    show_before = _show_now()
    with warnings.catch_warnings(record=True) as caught:
        # (catch_warnings restores the list on exit; the caches of "once" and "default" are told it changed)
        if error:
            warnings.filters = [("always", *f[1:]) if f[0] == "error" else f for f in warnings.filters]
            mutated = (getattr(warnings, "_filters_mutated", None)
                       or getattr(warnings, "_filters_mutated_lock_held", None))
            if mutated is not None:
                mutated()
        _only_this_thread(in_force, error, show_before)
        yield
    show = getattr(warnings, "_showwarnmsg", None)  # what a warning that is simply shown goes through
    for message in caught:
        if error and _freed_user_object(message) and _action(in_force, message) == "error" \
                and _to_unraisable_hook(message):
            continue  # the suite's own check of what it leaves unclosed has it, as from a collection anywhere
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
