"""pytest-html: every checked test's row carries its counts, and a violating test's extras carry the failure text
the terminal showed. Registered only when pytest-html is installed and ``--html`` is given (its hooks exist only
then), through its documented hooks: ``pytest_html_results_table_header``, ``pytest_html_results_table_row`` and
``report.extras`` made with ``pytest_html.extras.text``.

Two halves, because pytest-html builds its page where results are reported (the xdist controller) while the
counts are known where the test ran (a worker): the process that ran the test puts the counts and the extra on the
test's teardown report (xdist sends report attributes to the controller), and the reporting process reads them
there when pytest-html asks for the test's rows, which it does once the teardown report has arrived.
"""

from __future__ import annotations

import html
from collections.abc import Generator, Mapping
from typing import Any, Callable

import pytest

from ..verdict import KINDS
from .records import text_of

COUNTS_ATTR = "sockhygiene_counts"


def counts_of(record: Any) -> dict[str, int | None]:
    """A record's counts, whatever its shape (``results``: a dict, a compact tuple, or a clean test's item). None:
    a count the test could not measure (other code had replaced the socket hooks: ``verdict.unmeasured``)."""
    if isinstance(record, dict):
        counts = record["counts"]
        return {k: _count(counts.get(k, 0)) for k in KINDS}
    if isinstance(record, (tuple, list)) and len(record) > 1:
        return {k: _count(v) for k, v in zip(KINDS, record[1])}
    return {k: 0 for k in KINDS}


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


def cell_text(counts: Mapping[str, int | None] | None) -> str:
    """What the row shows: the counts that are not zero and those not measured, ``clean`` when all are zero,
    nothing for an unchecked test."""
    if counts is None:
        return ""
    moved = [f"{k} {counts[k]}" if counts[k] is not None else f"{k} unmeasured" for k in KINDS
             if k in counts and counts[k] != 0]
    return ", ".join(moved) if moved else "clean"


class PytestHtmlRows:
    """``record_of(item)``: the record of the test just judged, if it is that item's. ``reporting``: this process
    reports (it builds pytest-html's page): a plain run's, or xdist's controller (where no test runs, so the first
    half never runs there)."""

    def __init__(self, record_of: Callable[[pytest.Item], Any], reporting: bool,
                 problem: Callable[[str, BaseException], None]) -> None:
        self.record_of = record_of
        self.reporting = reporting
        self.problem = problem
        """Where a failure of this half is reported (the session's plugin problems): a hook wrapper's exception
        would be pytest's INTERNALERROR, and the run's remaining tests would not run."""
        self.rows: dict[str, dict[str, int | None]] = {}

    # -- where the test ran --------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
        report = yield
        if call.when == "teardown":
            try:
                self._carry(item, report)
            except Exception as e:  # noqa: BLE001 - the test's report stands, without its counts
                self.problem(f"pytest-html's row of {item.nodeid}", e)
        return report

    def _carry(self, item: pytest.Item, report: Any) -> None:
        """Put the test's counts, and a violating test's failure text, on its teardown report."""
        # an xdist worker's record rides on the report already (plugin._RecordCarrier), a plain run's does not
        record = getattr(report, "sockhygiene", None)
        if record is None:
            record = self.record_of(item)
        if record is not None:
            setattr(report, COUNTS_ATTR, counts_of(record))
            text = text_of(record) if isinstance(record, dict) else ""
            if text:
                from pytest_html import extras

                before = list(getattr(report, "extras", None) or [])
                report.extras = [*before, extras.text(text, name="sockhygiene")]

    # -- where pytest-html builds its page ---------------------------------------------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Before pytest-html's own (``trylast``), which asks for the test's rows when its teardown report comes."""
        if self.reporting and report.when == "teardown":
            counts = getattr(report, COUNTS_ATTR, None)
            if isinstance(counts, dict):
                self.rows[report.nodeid] = counts

    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        if self.reporting:
            cells.append('<th class="sortable" data-column-type="sockhygiene">Sockets</th>')

    def pytest_html_results_table_row(self, report: Any, cells: list[str]) -> None:
        if not self.reporting:
            return
        nodeid = getattr(report, "nodeid", "")
        counts = self.rows.get(nodeid)
        if report.when == "teardown":  # the test's last row: its counts are not needed any more
            self.rows.pop(nodeid, None)
        cells.append(f'<td class="col-sockhygiene">{html.escape(cell_text(counts))}</td>')
