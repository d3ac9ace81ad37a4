"""What moved between two runs, for a code review: per test, the counts that grew beyond their tolerance, the new
tests that open connections, and the tests whose counts shrank. A growth is what a reviewer must look at (and
what fails the command); the rest is context.

The tolerance (``tolerated``): connections and TIME_WAIT entries vary from run to run with timing (a retry, a pool
that reconnected), so they get the baseline ratchet's +max(1, 10 %) (``baseline.allowed``). What a test leaves
open or unclosed (``established``, ``close_wait``, ``listen``, ``clients``, ``unused_clients``) gets none: one
connection or client more than before is the regression a review is for, and a tolerance of one hid it.

OLD may be a report or a baseline file (a baseline holds only ``connections`` and ``time_wait``, so only those
are compared then).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from ..baseline import allowed
from ..verdict import EVENT_COUNTS

Counts = Mapping[str, int]


@dataclasses.dataclass
class Change:
    nodeid: str
    moves: list[tuple[str, int, int]]
    """(kind, old, new) for each count that moved this way."""


@dataclasses.dataclass
class Diff:
    grew: list[Change]
    new: list[Change]
    """New tests that open connections: (``connections``, 0, count)."""
    shrank: list[Change]
    compared: int
    gone: int
    """Tests of OLD that NEW does not have (deleted, renamed, deselected, or in a shard NEW lacks)."""

    @property
    def failed(self) -> bool:
        return bool(self.grew)


def tolerated(kind: str, base: int) -> int:
    """The most ``kind`` may count in NEW when it counted ``base`` in OLD without having grown."""
    return allowed(base) if kind in EVENT_COUNTS else base


def compare(old: Mapping[str, Counts], new: Mapping[str, Counts], kinds: Sequence[str]) -> Diff:
    """``old`` and ``new``: node id -> counts, in the order to list them (NEW's order)."""
    grew: list[Change] = []
    fresh: list[Change] = []
    shrank: list[Change] = []
    compared = 0
    for nodeid, counts in new.items():
        before = old.get(nodeid)
        if before is None:
            if counts.get("connections", 0) > 0:
                fresh.append(Change(nodeid, [("connections", 0, counts["connections"])]))
            continue
        compared += 1
        up = [(k, before[k], counts.get(k, 0)) for k in kinds
              if k in before and counts.get(k, 0) > tolerated(k, before[k])]
        down = [(k, before[k], counts.get(k, 0)) for k in kinds if k in before and counts.get(k, 0) < before[k]
                and k in counts]  # a count the new run could not measure did not shrink
        if up:
            grew.append(Change(nodeid, up))
        if down:
            shrank.append(Change(nodeid, down))
    gone = sum(1 for nodeid in old if nodeid not in new)
    return Diff(grew, fresh, shrank, compared, gone)


_RULE = "+max(1, 10%) for connections and TIME_WAIT, none for what is left open"


def _moves(c: Change, limit: bool) -> str:
    parts = []
    for kind, a, b in c.moves:
        parts.append(f"{kind} {a} -> {b}" + (f" (at most {tolerated(kind, a)})" if limit else ""))
    return ", ".join(parts)


def text_lines(d: Diff) -> list[str]:
    lines = [f"{d.compared} tests in both: {len(d.grew)} grew beyond the tolerance, {len(d.shrank)} shrank; "
             f"{len(d.new)} new tests open connections" + (f"; {d.gone} tests of OLD are not in NEW" if d.gone else "")]
    if d.grew:
        lines.append(f"grew beyond the tolerance ({_RULE}):")
        lines.extend(f"  {c.nodeid}  {_moves(c, True)}" for c in d.grew)
    if d.new:
        lines.append("new tests that open connections:")
        lines.extend(f"  {c.nodeid}  connections {c.moves[0][2]}" for c in d.new)
    if d.shrank:
        lines.append("shrank:")
        lines.extend(f"  {c.nodeid}  {_moves(c, False)}" for c in d.shrank)
    return lines


def _cell(text: str) -> str:
    """A node id as a Markdown table cell: a code span whose fence is longer than any run of backticks in the id
    (CommonMark's rule, so the id is shown as it is), with the table's delimiter escaped (GFM's rule)."""
    text = text.replace("|", "\\|")
    if "`" not in text:
        return f"`{text}`"
    fence = "`" * (max(len(run) for run in re.findall("`+", text)) + 1)
    return f"{fence} {text} {fence}"


def markdown_lines(d: Diff, old_name: str, new_name: str) -> list[str]:
    head = "grew" if d.grew else "no growth"
    lines = [f"### Socket hygiene: {head}", ""]
    summary = (f"{d.compared} tests in both reports: **{len(d.grew)} grew** beyond the tolerance ({_RULE}), "
               f"{len(d.shrank)} shrank; {len(d.new)} new tests open connections.")
    if d.gone:
        summary += f" {d.gone} tests of `{old_name}` are not in `{new_name}`."
    lines.append(summary)
    rows: list[str] = []
    for what, changes in (("grew", d.grew), ("new", d.new), ("shrank", d.shrank)):
        for c in changes:
            for kind, a, b in c.moves:
                note = f"grew (at most {tolerated(kind, a)})" if what == "grew" else what
                rows.append(f"| {_cell(c.nodeid)} | {kind} | {'' if what == 'new' else a} | {b} | {note} |")
    if rows:
        lines += ["", "| test | count | before | after | |", "|---|---|---:|---:|---|", *rows]
    return lines


def counts_by_test(tests: Sequence[Mapping[str, object]]) -> dict[str, dict[str, int]]:
    """node id -> counts of a report's tests (the last record wins, as in ``merge``)."""
    out: dict[str, dict[str, int]] = {}
    for t in tests:
        counts = t.get("counts")
        assert isinstance(counts, dict)
        # a count the run could not measure (null) is left out: compared with nothing
        out[str(t["nodeid"])] = {str(k): int(v) for k, v in counts.items() if v is not None}
    return out
