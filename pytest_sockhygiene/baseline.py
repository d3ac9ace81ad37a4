"""The baseline ratchet: a test's connections and TIME_WAIT may not grow beyond what was recorded.

The file is diff-friendly JSON: sorted keys, one test per line, so a code review shows exactly which test's
counts moved. A test grows when its count exceeds ``allowed(baseline)``: the baseline plus the larger of 1 and
10 % (rounded up), so a test with 1 connection may have 2, and one with 50 may have 55.
"""

from __future__ import annotations

import json
import math
from collections.abc import Container, Iterable, Mapping

from .endpoints import ConfigError

TRACKED = ("connections", "time_wait")
Baseline = dict[str, dict[str, int]]


def allowed(base: int) -> int:
    return base + max(1, math.ceil(base * 0.10))


def load(path: str) -> Baseline:
    """Raises ConfigError with the path and what is wrong (missing, unreadable, not a baseline)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"baseline file {path!r} does not exist; "
                          "create it with --sockhygiene-baseline-update") from None
    except OSError as e:
        raise ConfigError(f"baseline file {path!r} cannot be read: {e.strerror or e}") from None
    except ValueError as e:
        raise ConfigError(f"baseline file {path!r} is not valid JSON: {e}") from None
    tests = data.get("tests") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("version") != 1 or not isinstance(tests, dict):
        raise ConfigError(f"baseline file {path!r} is not a sockhygiene baseline (expected version 1 and 'tests')")
    out: Baseline = {}
    for nodeid, counts in tests.items():
        if not isinstance(counts, dict) or not all(
                k in TRACKED and isinstance(v, int) and not isinstance(v, bool) and v >= 0 for k, v in counts.items()):
            raise ConfigError(f"baseline file {path!r}: bad entry for {nodeid!r}: {counts!r}")
        out[nodeid] = dict(counts)
    return out


def grown(nodeid: str, counts: Mapping[str, int], baseline: Baseline) -> list[tuple[str, int, int]]:
    """``(kind, count, baseline)`` for each tracked count that grew beyond its tolerance; [] for unknown tests."""
    base = baseline.get(nodeid)
    if base is None:
        return []
    return [(k, counts[k], base[k]) for k in TRACKED
            if k in base and counts.get(k) is not None and counts.get(k, 0) > allowed(base[k])]  # None: unmeasured


def dumps(tests: Mapping[str, Mapping[str, int]]) -> str:
    lines = ",\n".join(f"    {json.dumps(nodeid)}: {json.dumps(dict(sorted(c.items())), sort_keys=True)}"
                       for nodeid, c in sorted(tests.items()))
    return '{\n  "version": 1,\n  "tests": {\n' + lines + ("\n" if lines else "") + "  }\n}\n"


def updated(existing: Baseline, records: Iterable[Mapping[str, object]],
            finished: Container[str] | None = None) -> Baseline:
    """The baseline with the current counts of every checked test whose body ran to the end (``finished``: its
    call phase passed; ``None`` takes every record); every other entry is kept. A skipped test, a failed one, an
    interrupted one, and every test under ``--setup-plan`` or ``--setup-only`` counts 0 or less than it would:
    recording that would erase the ratchet, and the next real run would then fail the test as grown."""
    out = {k: dict(v) for k, v in existing.items()}
    for r in records:
        nodeid = str(r["nodeid"])
        if finished is not None and nodeid not in finished:
            continue
        counts = r["counts"]
        assert isinstance(counts, dict)
        previous = out.get(nodeid, {})
        # a count that could not be measured (None) keeps its baseline value, if any: never recorded as 0
        out[nodeid] = {k: int(counts.get(k, 0)) if counts.get(k, 0) is not None else previous[k]
                       for k in TRACKED if counts.get(k, 0) is not None or k in previous}
    return out


def write(path: str, tests: Mapping[str, Mapping[str, int]]) -> None:
    """Write the file whole (a temporary file renamed over it)."""
    from .outputs import write_text  # outputs reads baseline files through this module

    write_text(path, dumps(tests))
