"""Limits: what one test may leave behind, where the numbers come from, and how bad values are refused.

Precedence, lowest first: built-in defaults, ini (``sockhygiene_<limit>``), markers (module ``pytestmark``,
then class, then function: the closest wins per key), then the ``sockhygiene`` fixture at run time.
Every parser here raises :class:`ConfigError` with a message that names the key; the caller adds *where*
(the ini key, or the test id) so that a user can find and fix the typo.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .endpoints import ConfigError, IgnorePattern

LIMIT_KEYS: tuple[str, ...] = ("established", "close_wait", "listen", "time_wait", "clients", "connections",
                               "unused_clients")
"""Counted kinds; each limit is the most one test may have. ``None`` means unlimited. The order is the order of
the compact records (``results._Compact``) and of the JUnit properties: new kinds go at the end."""

OPTION_KEYS: tuple[str, ...] = ("ignore", "settle", "enabled")
MARKER_KEYS: tuple[str, ...] = LIMIT_KEYS + OPTION_KEYS

DEFAULT_SETTLE = 0.5
"""Seconds a violating test is re-checked before it is reported (a clean test never waits).

Long enough for a server thread or an event loop to close its side after the test returned, short enough
that a suite with many leaks in ``warn`` mode does not crawl.
"""

DEFAULT_TIME_WAIT = 5
"""A test may leave this many TIME_WAIT entries: one or two requests with a fresh client are normal; a loop of
fresh clients (the new-client-per-request regression) is not."""

UNLIMITED_WORDS = ("unlimited", "none")


@dataclasses.dataclass(frozen=True)
class Limits:
    """The effective limits for one test. A value, so merging is ``dataclasses.replace``."""

    established: int | None = 0
    close_wait: int | None = 0
    listen: int | None = 0
    time_wait: int | None = DEFAULT_TIME_WAIT
    clients: int | None = 0
    connections: int | None = None
    unused_clients: int | None = None
    """Unclosed clients that never opened a connection: counted, never failing unless a limit is set (they hold
    no socket; a client built to test URL merging or served by a mock is not a connection leak)."""
    ignore: tuple[IgnorePattern, ...] = ()
    settle: float = DEFAULT_SETTLE
    enabled: bool = True

    def limit(self, kind: str) -> int | None:
        return getattr(self, kind)  # type: ignore[no-any-return]

    def merged(self, overrides: Mapping[str, Any]) -> Limits:
        return dataclasses.replace(self, **dict(overrides)) if overrides else self


def _did_you_mean(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_limit(key: str, value: Any) -> int | None:
    """A limit from Python (marker, fixture): a non-negative int, or None for unlimited."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"limit {key!r} must be a non-negative integer or None, got {value!r}")
    if value < 0:
        raise ConfigError(f"limit {key!r} must be a non-negative integer or None, got {value!r}")
    return value


def parse_settle(value: Any, key: str = "settle") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key!r} must be a number of seconds >= 0, got {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ConfigError(f"{key!r} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def parse_ignore(value: Any) -> tuple[IgnorePattern, ...]:
    """A glob or a list of globs. A lone string is accepted as one glob: ``ignore="*:6379"`` is a common spelling."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"'ignore' must be a list of endpoint globs such as ['*:6379'], got {value!r}")
    return tuple(IgnorePattern(v) for v in value)


def parse_overrides(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Validate marker or fixture keywords into fields of :class:`Limits`."""
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        if key in LIMIT_KEYS:
            out[key] = parse_limit(key, value)
        elif key == "ignore":
            out[key] = parse_ignore(value)
        elif key == "settle":
            out[key] = parse_settle(value)
        elif key == "enabled":
            if not isinstance(value, bool):
                raise ConfigError(f"'enabled' must be True or False, got {value!r}")
            out[key] = value
        else:
            raise ConfigError(f"unknown limit {key!r}{_did_you_mean(key, MARKER_KEYS)}")
    return out


def merge_marker_kwargs(markers_closest_first: Iterable[tuple[Sequence[Any], Mapping[str, Any]]]) -> dict[str, Any]:
    """Merge ``(args, kwargs)`` of each ``sockhygiene`` marker, closest first as ``iter_markers`` yields them.

    The closest marker wins per key; positional arguments are refused rather than guessed at.
    """
    merged: dict[str, Any] = {}
    for args, kwargs in reversed(list(markers_closest_first)):
        if args:
            raise ConfigError(
                f"positional arguments {tuple(args)!r} are not accepted; use keywords such as established=1"
            )
        merged.update(parse_overrides(kwargs))
    return merged


def marker_problems(
    places: Iterable[tuple[str | None, Sequence[Any], Mapping[str, Any]]],
) -> list[tuple[str | None, str]]:
    """Every bad ``sockhygiene`` marker of one test, closest first: (where it was set, None for the test's own;
    what is wrong). Each marker is read on its own, so a module's ``pytestmark`` typo does not hide the test's own
    (``merge_marker_kwargs`` stops at the first). Only called once merging has failed: the error path."""
    out: list[tuple[str | None, str]] = []
    for where, args, kwargs in places:
        try:
            merge_marker_kwargs([(args, kwargs)])
        except ConfigError as e:
            out.append((where, str(e)))
    return out


# -- ini ------------------------------------------------------------------------------------------------------


def parse_ini_limit(key: str, raw: str) -> int | None:
    text = raw.strip()
    if text.lower() in UNLIMITED_WORDS:
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise ConfigError(f"expected a non-negative integer or 'unlimited', got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"expected a non-negative integer or 'unlimited', got {raw!r}")
    return value


def parse_ini_settle(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"expected a number of seconds >= 0, got {raw!r}") from None
    return parse_settle(value, "settle")


def limits_from_ini(values: Mapping[str, Any]) -> Limits:
    """Build the session's base limits from raw ini strings keyed by ini name (missing or empty = default).

    Raises ConfigError naming the ini key.
    """
    fields: dict[str, Any] = {}
    for kind in LIMIT_KEYS:
        ini_key = f"sockhygiene_{kind}"
        raw = values.get(ini_key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            continue
        try:
            fields[kind] = parse_ini_limit(kind, str(raw))
        except ConfigError as e:
            raise ConfigError(f"ini {ini_key!r}: {e}") from None
    raw_settle = values.get("sockhygiene_settle")
    if raw_settle is not None and str(raw_settle).strip():
        try:
            fields["settle"] = parse_ini_settle(str(raw_settle))
        except ConfigError as e:
            raise ConfigError(f"ini 'sockhygiene_settle': {e}") from None
    raw_ignore = values.get("sockhygiene_ignore") or []
    try:
        fields["ignore"] = tuple(IgnorePattern(line) for line in raw_ignore if line.strip())
    except ConfigError as e:
        raise ConfigError(f"ini 'sockhygiene_ignore': {e}") from None
    return Limits(**fields)
