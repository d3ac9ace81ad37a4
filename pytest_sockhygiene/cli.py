"""``python -m pytest_sockhygiene merge|baseline|diff|show|html``: work with the JSON reports of finished runs.

For CI: merge the reports of a sharded suite into one, keep one baseline ratchet for all shards, show a pull
request what moved, print a report the way the terminal summary did, and draw the shards as one HTML page. It
reads files only: it never imports the pytest hooks, and runs without pytest being configured.

Exit status: 0 done; 1 ``diff`` found a count that grew; 2 bad usage or bad input (nothing is written then).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Callable, TextIO

from . import baseline as baseline_mod
from .endpoints import ConfigError
from .outputs import make_folders, names_a_directory, write_json
from .reporting import diff as diff_mod
from .reporting.html import write_page
from .reporting.merge import merge, sources
from .reporting.records import ReportResults, in_order, text_of
from .reporting.reports import Document, ReportError, load
from .summary import plural, summary_lines
from .verdict import KINDS

PROG = "python -m pytest_sockhygiene"


class _Failed(Exception):
    """A command cannot go on; the message is printed as an error and the exit status is 2."""


def _load_all(paths: Sequence[str]) -> list[tuple[str, Document]]:
    out = []
    for p in paths:
        try:
            out.append((p, load(p)))
        except ReportError as e:
            raise _Failed(str(e)) from None
    return out


def _write(what: str, path: str, write: Callable[[], None]) -> None:
    if names_a_directory(path):  # (``out/``: else a file named ``out``, where the user meant a folder)
        raise _Failed(f"cannot write {what} {path!r}: it names a directory; give a file path")
    try:
        make_folders(path)  # as the in-run options and ``--junitxml`` make theirs: ``-o reports/merged.json``
    except (FileExistsError, NotADirectoryError):
        raise _Failed(f"cannot write {what} {path!r}: a file is where one of its folders would be") from None
    except OSError as e:
        raise _Failed(f"cannot write {what} {path!r}: {e.strerror or e}") from None
    try:
        write()
    except OSError as e:
        raise _Failed(f"cannot write {what} {path!r}: {e.strerror or e}") from None


def cmd_merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    documents = _load_all(args.reports)
    merged = merge(documents, lambda msg: print(f"{PROG} merge: warning: {msg}", file=err))
    _write("the merged report", args.output, lambda: write_json(args.output, merged))
    print(f"merged {len(documents)} reports ({len(merged['tests'])} tests) into {args.output}", file=out)
    return 0


def cmd_baseline(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    [(_, doc)] = _load_all([args.report])
    # a test whose body did not run to the end (skipped, failed) counts 0 or less than it would: the report says
    # which they are (``finished``; a report of an earlier version does not, and every test is taken)
    finished = {t["nodeid"] for t in doc["tests"] if t.get("finished", True)}
    tests = baseline_mod.updated({}, doc["tests"], finished)
    _write("the baseline", args.output, lambda: baseline_mod.write(args.output, tests))
    left = len({t["nodeid"] for t in doc["tests"]} - finished)
    print(f"wrote the baseline of {plural(len(tests), 'test')} to {args.output}"
          + (f" (left out: {left} that did not run to the end, skipped or failed)" if left else ""), file=out)
    return 0


def _counts(path: str) -> tuple[dict[str, dict[str, int]], Sequence[str]]:
    """A report's counts per test, or a baseline file's (which holds only the tracked counts)."""
    try:
        return diff_mod.counts_by_test(load(path)["tests"]), KINDS
    except ReportError as e:
        try:
            return baseline_mod.load(path), baseline_mod.TRACKED
        except ConfigError:
            raise _Failed(str(e)) from None


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    old, kinds = _counts(args.old)
    try:
        new = diff_mod.counts_by_test(load(args.new)["tests"])
    except ReportError as e:
        raise _Failed(str(e)) from None
    result = diff_mod.compare(old, new, kinds)
    if args.format == "markdown":
        lines = diff_mod.markdown_lines(result, args.old, args.new)
    else:
        lines = diff_mod.text_lines(result)
    for line in lines:
        print(line, file=out)
    return 1 if result.failed else 0


def _rule(title: str, width: int = 80) -> str:
    return f" {title} ".center(width, "=")


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    [(_, doc)] = _load_all([args.report])
    offenders = [t for t in in_order(doc["tests"]) if not t.get("clean", True)]
    if offenders:
        print(_rule("socket hygiene violations"), file=out)
        for t in offenders:
            print(text_of(t), file=out)
            print(file=out)
    print(_rule("socket hygiene"), file=out)
    for line in summary_lines(ReportResults(doc), verbose=args.verbose):
        print(line, file=out)
    problems = doc["session"].get("plugin_problems", 0)
    if problems:
        print(f"{problems} plugin problem(s) in that run - a fault of pytest-sockhygiene, not of the tests; its "
              "terminal output has the details", file=out)
    return 0


def cmd_html(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    documents = _load_all(args.reports)
    if len(documents) == 1:
        doc, runs = documents[0][1], None
    else:  # the shards' page: their merged report, TIME_WAIT in flight counted report by report
        doc = merge(documents, lambda msg: print(f"{PROG} html: warning: {msg}", file=err))
        runs = sources(documents, doc)
    _write("the page", args.output, lambda: write_page(args.output, doc, args.title, runs=runs,
                                                                  reports=len(documents)))
    what = f"{len(documents)} reports" if len(documents) > 1 else "the report"
    print(f"wrote the page of {what} ({plural(len(doc['tests']), 'test')}) to {args.output}", file=out)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Work with pytest-sockhygiene's JSON reports "
                                "(--sockhygiene-report): merge shards, write a baseline, diff two runs, show one.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    m = sub.add_parser("merge", help="one report from several runs' reports (shards, matrix jobs, machines)")
    m.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the merged report")
    m.add_argument("reports", nargs="+", metavar="REPORT", help="reports; a test in several: the last one wins")
    m.set_defaults(run=cmd_merge)
    b = sub.add_parser("baseline", help="write a baseline file (--sockhygiene-baseline) from a report")
    b.add_argument("-o", "--output", required=True, metavar="BASELINE", help="the baseline file to write")
    b.add_argument("report", metavar="REPORT")
    b.set_defaults(run=cmd_baseline)
    d = sub.add_parser("diff", help="what grew, what is new and what shrank from OLD to NEW (exit 1 if grown)")
    d.add_argument("old", metavar="OLD", help="a report, or a baseline file")
    d.add_argument("new", metavar="NEW", help="a report")
    d.add_argument("--format", choices=("text", "markdown"), default="text",
                   help="markdown: a table for a pull-request comment")
    d.set_defaults(run=cmd_diff)
    s = sub.add_parser("show", help="print a report the way the terminal summary does, offenders first")
    s.add_argument("report", metavar="REPORT")
    s.add_argument("-v", "--verbose", action="store_true", help="the details even when every test is clean")
    s.set_defaults(run=cmd_show)
    h = sub.add_parser("html", help="the page --sockhygiene-html writes, from one report or several (shards)")
    h.add_argument("-o", "--output", required=True, metavar="PAGE", help="the HTML file to write")
    h.add_argument("--title", default="pytest-sockhygiene", help="the page's title (default: %(default)s)")
    h.add_argument("reports", nargs="+", metavar="REPORT",
                   help="reports; several are merged as by merge (a test in several: the last one wins)")
    h.set_defaults(run=cmd_html)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.run(args, out, err))
    except _Failed as e:
        print(f"{PROG} {args.command}: error: {e}", file=err)
        return 2
