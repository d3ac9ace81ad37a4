"""The ``socket hygiene`` section at the end of a run: one line when all is clean, details when not (or -v)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .results import CHECKS_OFF, HOOKS_REWRAPPED, Record, SessionResults


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 test``, ``2 tests``: the summary is read by people, and "1 tests checked" reads as a bug."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


def _ratio(value: int | None, limit: int | None) -> str:
    if value is None:
        return "unknown"
    if not limit:
        return str(value)
    return f"{value} of {limit} ({100.0 * value / limit:.1f}%)"


def _opened(s: dict[str, Any], records: Sequence[Record]) -> str:
    """The health line's connection and TIME_WAIT figures: summed over the tests whose counts were measured, and
    saying so when some were not (socket hooks bypassed: gevent's socket class), never a bare 0 for unknown."""
    if s["connections_opened"] is None:  # (``SessionResults.session``: no test's counts were measured)
        return "connections opened and peak TIME_WAIT unknown (no test's were measured: see the notice)"
    unmeasured = sum(1 for r in records if r["counts"].get("connections") is None)
    text = (f"{plural(s['connections_opened'], 'connection')} opened; peak TIME_WAIT caused "
            f"{_ratio(s['peak_time_wait'], s['ephemeral_ports'])} ephemeral ports")
    if unmeasured:
        text += f" (in the measured tests; {plural(unmeasured, 'test')} unmeasured: see the notice)"
    return text


def over_limit_mark(record: dict[str, Any], kind: str) -> str:
    """How a "most ..." line marks a test that broke its limit of ``kind`` (or grew beyond its baseline): a clean
    test at its limit and the violator next to it must not read alike."""
    for v in record.get("violations", ()):
        if v["kind"] == kind:
            return f"  [over limit {v['limit']}]"
        if v["kind"] == "baseline" and any(i.get("state") == kind for i in v.get("items", ())):
            return f"  [over baseline, at most {v['limit']}]"
    return ""


def tied_beyond(worst: Sequence[Record], kind: str, records: Sequence[Record]) -> int:
    """How many tests left out of a "most ..." list have the count of its last line: five tests picked by name
    from many with one TIME_WAIT entry each must not read as the five worst."""
    if not worst:
        return 0
    last = worst[-1]["counts"][kind]
    shown = sum(1 for r in worst if r["counts"][kind] == last)
    return sum(1 for r in records if r["counts"].get(kind) == last) - shown


def summary_lines(results: SessionResults, verbose: bool) -> list[str]:
    records = results.measured()  # expanded once for every figure below
    s = results.session(records)
    checked, dirty = s["tests_checked"], s["tests_with_violations"]
    lines: list[str] = []
    clean = not dirty and not s["session_leaks"]
    if clean and not checked:
        # nothing was checked: not "all clean" (a session whose table could not be read says why, in its notice)
        off = any(n.startswith(CHECKS_OFF) for n in s["notices"])
        lines.append(f"0 tests checked ({CHECKS_OFF}: see the notice below)" if off else "0 tests checked")
    elif clean and not verbose:
        lines.append(f"{plural(checked, 'test')} checked, all clean")
    else:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(s["violations_by_kind"].items()))
        lines.append(f"{plural(checked, 'test')} checked, {dirty} with violations" + (f" ({kinds})" if kinds else ""))
        for kind, title in (("time_wait", "most TIME_WAIT"), ("connections", "most connections")):
            worst = results.worst(kind, records=records)
            if worst:
                lines.append(f"{title}:")
                for r in worst:
                    origin = r.get("origins", {}).get(kind)
                    lines.append(f"  {r['counts'][kind]:>5}  {r['nodeid']}{over_limit_mark(r, kind)}"
                                 + (f"  ({origin})" if origin else ""))
                tied = tied_beyond(worst, kind, records)
                if tied:
                    lines.append(f"  ... and {plural(tied, 'more test')} with {worst[-1]['counts'][kind]}")
        lines.append(f"session health: {_opened(s, records)}; peak open file descriptors "
                     f"{_ratio(s['peak_open_fds'], s['fd_limit'])}")
    unused = [r["counts"].get("unused_clients", 0) for r in records]
    if sum(unused):
        # counted, never failing by default: said once, so that a suite can see them without a limit set
        limited = any(v.get("kind") == "unused_clients" for r in records for v in r.get("violations", ()))
        why = ("they never opened a connection; tests over their unused_clients limit are violations, above"
               if limited else "they never opened a connection: not leaks; sockhygiene_unused_clients=0 lists them")
        lines.append(f"unused clients: {sum(unused)} left unclosed by {plural(sum(1 for n in unused if n), 'test')} "
                     f"({why})")
    threads = results.threads_left()
    if threads:
        lines.append(f"threads left running: {len(threads)}, each the test's that started it (its sockets never "
                     "count against a later test):")
        for nodeid, text in threads[:5]:
            lines.append(f"  {nodeid}: {text}")
        if len(threads) > 5:
            lines.append(f"  ... and {len(threads) - 5} more (the JSON report lists them all)")
    rerun = results.rerun_after_violations
    if rerun:
        lines.append(f"run again after breaking their limits: {plural(len(rerun), 'test')}; "
                     "the record of each is its last attempt's, and what an earlier attempt left open may still be "
                     "open:")
        lines.extend(f"  {nodeid}" for nodeid in rerun[:10])
        if len(rerun) > 10:
            lines.append(f"  ... and {len(rerun) - 10} more")
    for nodeid in results.interrupted:
        lines.append(f"interrupted in {nodeid}: its sockets were checked when the run stopped, without failing it")
    if s["session_leaks"]:
        lines.append(f"session-level leaks: {len(s['session_leaks'])} left open at session end by fixtures of "
                     "broader scope (close them in the fixture's teardown; in enforce mode this fails the run):")
        for leak in s["session_leaks"][:20]:
            lines.append(f"  {leak['what']} - {leak['owner']}")
    for notice in s["notices"]:
        if verbose or not notice.startswith(HOOKS_REWRAPPED):  # (nothing to act on: said with -v)
            lines.append(f"notice: {notice}")
    return lines
