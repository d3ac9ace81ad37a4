"""Report files as the command line reads them: loaded, checked enough to be merged, compared and printed, or
refused with one clear sentence naming the file and what is wrong with it.

The check is structural (what ``merge``, ``diff``, ``show`` and ``baseline`` rely on), not a full JSON Schema
validation: the package does not depend on jsonschema. The tests validate what ``merge`` writes against
docs/report.schema.json.
"""

from __future__ import annotations

import json
from typing import Any

from ..verdict import EVENT_COUNTS

VERSION = 1

Document = dict[str, Any]

SESSION_INTS = ("tests_checked", "tests_with_violations", "plugin_problems")
SESSION_OPTIONAL_INTS = ("connections_opened", "peak_time_wait", "ephemeral_ports", "peak_open_fds", "fd_limit")
"""Null where unknown: the first two when no test's counts were measured (gevent's sockets bypass the hooks)."""


class ReportError(Exception):
    """A report file cannot be used; the message names the file."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def load(path: str) -> Document:
    """The report at ``path``, or ReportError saying why not."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ReportError(f"{path}: is a directory, not a report") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: cannot be read: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise ReportError(f"{path}: not a sockhygiene report (not valid JSON: {e})") from None
    check(data, path)
    return data  # type: ignore[no-any-return]


def check(data: Any, path: str) -> None:
    """Raise ReportError unless ``data`` is a version-1 sockhygiene report."""
    if not isinstance(data, dict) or "version" not in data:
        raise ReportError(f"{path}: not a sockhygiene report (expected a JSON object with 'version', 'tests' and "
                          "'session', as --sockhygiene-report writes)")
    if isinstance(data.get("tests"), dict) and "session" not in data:
        raise ReportError(f"{path}: is a baseline file, not a report (reports are written by "
                          "--sockhygiene-report)")
    if data["version"] != VERSION:
        raise ReportError(f"{path}: report version {data['version']!r}; this pytest-sockhygiene reads version "
                          f"{VERSION}")
    tests, session = data.get("tests"), data.get("session")
    if not isinstance(tests, list) or not isinstance(session, dict):
        raise ReportError(f"{path}: not a sockhygiene report ('tests' must be a list and 'session' an object)")
    for i, t in enumerate(tests):
        problem = _test_problem(t)
        if problem:
            where = t.get("nodeid") if isinstance(t, dict) and isinstance(t.get("nodeid"), str) else f"#{i + 1}"
            raise ReportError(f"{path}: test {where}: {problem}")
    for key in SESSION_INTS:
        if not _is_int(session.get(key)):
            raise ReportError(f"{path}: session.{key} must be an integer, got {session.get(key)!r}")
    for key in SESSION_OPTIONAL_INTS:
        if session.get(key) is not None and not _is_int(session.get(key)):
            raise ReportError(f"{path}: session.{key} must be an integer or null, got {session.get(key)!r}")
    for key in ("session_leaks", "notices"):
        if not isinstance(session.get(key), list):
            raise ReportError(f"{path}: session.{key} must be a list, got {session.get(key)!r}")
    for leak in session["session_leaks"]:  # ``show`` and the page print each one's what and owner
        if not isinstance(leak, dict) or not all(isinstance(leak.get(k), str) for k in ("kind", "what", "owner")):
            raise ReportError(f"{path}: session.session_leaks must hold objects with 'kind', 'what' and 'owner' "
                              f"strings, got {leak!r}")
    if not all(isinstance(n, str) for n in session["notices"]):
        raise ReportError(f"{path}: session.notices must be a list of strings")
    rerun = session.get("rerun_after_violations", [])  # (reports written before it have none)
    if not isinstance(rerun, list) or not all(isinstance(n, str) for n in rerun):
        raise ReportError(f"{path}: session.rerun_after_violations must be a list of node ids, got {rerun!r}")
    if not isinstance(session.get("violations_by_kind"), dict):
        raise ReportError(f"{path}: session.violations_by_kind must be an object")


def _count_ok(kind: str, value: Any) -> bool:
    """A count as the plugin writes it: a non-negative integer, or null for a count the socket hooks' events give
    that a test could not measure (other code had replaced them: ``verdict.unmeasured``, docs/platforms.md)."""
    return (_is_int(value) and value >= 0) or (value is None and kind in EVENT_COUNTS)


def _test_problem(t: Any) -> str:
    if not isinstance(t, dict):
        return "not an object"
    if not isinstance(t.get("nodeid"), str):
        return "'nodeid' must be a string"
    if not isinstance(t.get("clean"), bool):
        return "'clean' must be true or false"
    if not isinstance(t.get("finished", False), bool):
        return "'finished' must be true or false"
    counts = t.get("counts")
    if not isinstance(counts, dict) or not all(_count_ok(k, v) for k, v in counts.items()):
        return (f"'counts' must map kinds to non-negative integers ({' and '.join(EVENT_COUNTS)} may be null: not "
                f"measured), got {counts!r}")
    violations = t.get("violations")
    if not isinstance(violations, list) or not all(
            isinstance(v, dict) and isinstance(v.get("kind"), str) and _is_int(v.get("count"))
            and _is_int(v.get("limit")) and isinstance(v.get("items"), list) for v in violations):
        return "'violations' must be a list of objects with 'kind', 'count', 'limit' and 'items'"
    return ""


def dirty(tests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [t for t in tests if not t.get("clean", True)]
