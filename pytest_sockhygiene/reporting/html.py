"""The session as one self-contained HTML page (``--sockhygiene-html``): readable when opened from a CI artifact,
with no network, no script and no CDN - inline SVG and CSS only.

At the top, the session's health (the terminal summary's text, and its figures as cards). Below, a timeline of
the run with the tests in run order along the x axis, in three bands: this process's TIME_WAIT entries in flight
(each test's entries live 60 s from the end of its check, the same estimate as the summary's peak), its open file
descriptors at the end of each test, and the connections each test opened. A test that broke a limit is marked
across the bands and links to its details below, which are the failure text the terminal showed.

It is made from the JSON report's document (``SessionResults.document()``), so the page and the report always
agree; ``python -m pytest_sockhygiene html`` makes the same page from reports on disk, one run's or the shards' of
a suite (merged as ``merge`` merges them, TIME_WAIT in flight counted report by report).
"""

from __future__ import annotations

import bisect
import datetime
import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..health import TIME_WAIT_SECONDS
from ..outputs import make_folders, write_text
from ..summary import summary_lines
from .records import ReportResults, text_of

MAX_COLUMNS = 1200
"""More tests than this share columns (each column shows its tests' largest values): the page stays small."""

WIDTH, LEFT, RIGHT = 1200, 64, 16
BAND, GAP, TOP = 110, 46, 8

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1f2328;background:#fff}
main{max-width:1240px;margin:0 auto;padding:20px 24px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}h3{font-size:14px;margin:18px 0 6px}
.sub{color:#59636e;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.card{border:1px solid #d1d9e0;border-radius:8px;padding:8px 14px;min-width:150px}
.card b{display:block;font-size:20px}.card span{color:#59636e;font-size:12px}
.bad{border-color:#cf222e}.bad b{color:#cf222e}.ok b{color:#1a7f37}
pre{background:#f6f8fa;border:1px solid #d1d9e0;border-radius:6px;padding:10px 12px;overflow:auto;font:12px/1.5
ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;white-space:pre-wrap;overflow-wrap:anywhere}
svg{width:100%;height:auto;display:block}
.axis{stroke:#8c959f;stroke-width:1}.grid{stroke:#eaeef2;stroke-width:1}
.lbl{font:11px system-ui,sans-serif;fill:#59636e}.ttl{font:12px system-ui,sans-serif;fill:#1f2328;font-weight:600}
.tw{fill:#bf8700;fill-opacity:.25;stroke:#bf8700;stroke-width:1.5}
.fds{fill:none;stroke:#0969da;stroke-width:1.5}
.conn{fill:#8250df}
.mark line{stroke:#cf222e;stroke-width:1.5;stroke-opacity:.55}.mark circle{fill:#cf222e}
.mark:hover line{stroke-opacity:1;stroke-width:3}
a{color:#0969da}ul.tests{padding-left:20px}
.key{display:inline-block;width:10px;height:10px;margin:0 4px 0 12px;border-radius:2px}
"""


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def in_flight(times: Sequence[float | None], counts: Sequence[int],
              span: float = TIME_WAIT_SECONDS) -> list[int | None]:
    """TIME_WAIT entries alive at the end of each test: the entries of the tests whose check ended in the ``span``
    seconds up to then (including its own). None for a test without a time."""
    known = sorted((t, n) for t, n in zip(times, counts) if t)
    stamps = [t for t, _ in known]
    prefix = [0]
    for _, n in known:
        prefix.append(prefix[-1] + n)
    out: list[int | None] = []
    for t in times:
        if not t:
            out.append(None)
            continue
        hi = bisect.bisect_right(stamps, t)
        lo = bisect.bisect_right(stamps, t - span)
        out.append(prefix[hi] - prefix[lo])
    return out


def several_runs(runs: Sequence[int] | None) -> bool:
    """Whether the tests of ``runs`` (the run each came from, or None for one run) came from more than one run:
    what decides how TIME_WAIT in flight is counted and how the timeline is labelled."""
    return runs is not None and len(set(runs)) > 1


def in_flight_by_run(times: Sequence[float | None], counts: Sequence[int],
                     runs: Sequence[int] | None = None) -> list[int | None]:
    """``in_flight``, each run on its own. ``runs``: the run (the report, for a page of several) each test came
    from; None for one run. The shards of a suite run on other machines or in other processes: their TIME_WAIT
    entries hold no port of one another's, so a test's in-flight count is its own run's alone."""
    if runs is None or not several_runs(runs):
        return in_flight(times, counts)
    out: list[int | None] = [None] * len(times)
    groups: dict[int, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run, []).append(i)
    for indexes in groups.values():
        for i, value in zip(indexes, in_flight([times[i] for i in indexes], [counts[i] for i in indexes])):
            out[i] = value
    return out


def _columns(values: Sequence[int | None], per: int) -> list[int | None]:
    out: list[int | None] = []
    for i in range(0, len(values), per):
        known = [v for v in values[i:i + per] if v is not None]
        out.append(max(known) if known else None)
    return out


def _nice_max(v: int) -> int:
    """The band's top: the first of 2, 4, 6, 8, 10, 20, 40, 50, 60, 80, 100, 200, ... not below ``v`` (even, so
    that the middle gridline is a whole number)."""
    scale = 1
    while True:
        for step in (2, 4, 6, 8, 10) if scale == 1 else (2, 4, 5, 6, 8, 10):
            if step * scale >= v:
                return step * scale
        scale *= 10


class _Band:
    def __init__(self, index: int, title: str, top_value: int) -> None:
        self.y0 = TOP + index * (BAND + GAP) + 24
        self.title = title
        self.top = max(top_value, 1)

    def y(self, v: float) -> float:
        return self.y0 + BAND - (v / self.top) * BAND

    def frame(self, plot_w: float) -> list[str]:
        out = [f'<text class="ttl" x="{LEFT}" y="{self.y0 - 12}">{_esc(self.title)}</text>']
        for frac in (0.0, 0.5, 1.0):
            y = self.y(self.top * frac)
            out.append(f'<line class="{"axis" if frac == 0 else "grid"}" x1="{LEFT}" x2="{LEFT + plot_w}" '
                       f'y1="{y:.1f}" y2="{y:.1f}"/>')
            label = self.top * frac
            out.append(f'<text class="lbl" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{int(label)}</text>')
        return out


def _polyline(band: _Band, xs: Sequence[float], values: Sequence[int | None], css: str, area: bool) -> list[str]:
    """One path per run of known values (an unknown value breaks the line)."""
    out: list[str] = []
    run: list[tuple[float, float]] = []
    for x, v in [*list(zip(xs, values)), (0.0, None)]:
        if v is not None:
            run.append((x, band.y(v)))
            continue
        if run:
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in run)
            if area:
                base = band.y(0)
                pts = f"{run[0][0]:.1f},{base:.1f} {pts} {run[-1][0]:.1f},{base:.1f}"
                out.append(f'<polygon class="{css}" points="{pts}"/>')
            else:
                out.append(f'<polyline class="{css}" points="{pts}"/>')
            run = []
    return out


def timeline(tests: Sequence[Mapping[str, Any]], anchors: Mapping[int, str], runs: Sequence[int] | None = None) -> str:
    """The SVG: tests in run order on x; TIME_WAIT in flight, open fds and connections opened in three bands.
    ``runs``: the run each test came from, for a page of several reports (``in_flight_by_run``)."""
    n = len(tests)
    if not n:
        return '<p class="sub">No test was checked.</p>'
    per = max(1, -(-n // MAX_COLUMNS))
    cols = -(-n // per)
    plot_w = WIDTH - LEFT - RIGHT
    xs = [LEFT + (c + 0.5) * plot_w / cols for c in range(cols)]
    samples = [t.get("sample") or {} for t in tests]
    several = several_runs(runs)
    tw = _columns(in_flight_by_run([s.get("time") for s in samples],
                                   [t["counts"].get("time_wait") or 0 for t in tests], runs), per)
    fds = _columns([s.get("fds") for s in samples], per)
    conns = _columns([t["counts"].get("connections") or 0 for t in tests], per)  # null: unmeasured
    shared = f" - per column of {per} tests, the most" if per > 1 else ""

    def top(values: Sequence[int | None]) -> int:
        return _nice_max(max((v for v in values if v is not None), default=0))

    bands = [
        _Band(0, f"TIME_WAIT entries in flight ({'each report' if several else 'this run'}'s own, 60 s each)"
                 f"{shared}", top(tw)),
        _Band(1, f"open file descriptors at the end of each test{shared}", top(fds)),
        _Band(2, f"connections each test opened{shared}", top(conns)),
    ]
    height = bands[-1].y0 + BAND + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" role="img" '
             f'aria-label="timeline of {n} tests">']
    for b in bands:
        parts.extend(b.frame(plot_w))
    parts.extend(_polyline(bands[0], xs, tw, "tw", area=True))
    parts.extend(_polyline(bands[1], xs, fds, "fds", area=False))
    bar_w = max(1.0, plot_w / cols * 0.7)
    for x, v in zip(xs, conns):
        if v:
            y = bands[2].y(v)
            parts.append(f'<rect class="conn" x="{x - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                         f'height="{bands[2].y(0) - y:.1f}"/>')
    y_top, y_bottom = bands[0].y0, bands[-1].y(0)
    for i, anchor in anchors.items():
        x = xs[i // per]
        t = tests[i]
        kinds = ", ".join(sorted({v["kind"] for v in t.get("violations", [])}))
        parts.append(f'<a class="mark" href="#{anchor}"><title>{_esc(t["nodeid"])}: {_esc(kinds)}</title>'
                     f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_top:.1f}" y2="{y_bottom:.1f}"/>'
                     f'<circle cx="{x:.1f}" cy="{y_top:.1f}" r="4"/></a>')
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        i = min(n - 1, round(frac * (n - 1)))
        parts.append(f'<text class="lbl" x="{xs[i // per]:.1f}" y="{y_bottom + 16:.1f}" text-anchor="middle">'
                     f'{i + 1}</text>')
    parts.append(f'<text class="lbl" x="{LEFT + plot_w:.1f}" y="{y_bottom + 28:.1f}" text-anchor="end">'
                 f'tests, {"report by report, " if several else ""}in the order their results arrived</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _card(value: Any, label: str, css: str = "") -> str:
    return f'<div class="card {css}"><b>{_esc(value)}</b><span>{_esc(label)}</span></div>'


def _of(value: int | None, limit: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{value} of {limit}" if limit else str(value)


def render(document: Mapping[str, Any], title: str = "pytest-sockhygiene", texts: Mapping[str, str] | None = None,
           generated: datetime.datetime | None = None, runs: Sequence[int] | None = None,
           reports: int = 1) -> str:
    """The page for a report document. ``texts``: node id -> failure text (rebuilt from the record if absent).
    ``runs``: for a document merged from several reports, the index of the report each test came from (the
    command line's ``html``): TIME_WAIT in flight is then counted report by report. ``reports``: how many
    reports the document was merged from - the subtitle's count, which ``runs`` cannot give (a report with no
    test contributes none)."""
    tests: list[Mapping[str, Any]] = list(document["tests"])
    s = document["session"]
    texts = dict(texts or {})
    anchors: dict[int, str] = {i: f"t{i + 1}" for i, t in enumerate(tests) if not t.get("clean", True)}
    dirty = s["tests_with_violations"]
    leaks = s.get("session_leaks", [])
    when = (generated or datetime.datetime.now()).strftime("%Y-%m-%d %H:%M:%S")
    what = f"{reports} reports merged" if reports > 1 else "a pytest session"
    cards = [
        _card(s["tests_checked"], "tests checked"),
        _card(dirty, "with violations", "bad" if dirty else "ok"),
        _card(len(leaks), "session-level leaks", "bad" if leaks else "ok"),
        _card(_of(s["connections_opened"], None), "connections opened"),
        _card(_of(s["peak_time_wait"], s.get("ephemeral_ports")), "peak TIME_WAIT of ephemeral ports"),
        _card(_of(s.get("peak_open_fds"), s.get("fd_limit")), "peak open fds of the limit"),
    ]
    summary = "\n".join(summary_lines(ReportResults(document), verbose=True))
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="sub">socket hygiene of {_esc(what)} - {_esc(len(tests))} tests - written {_esc(when)}</p>',
        '<div class="cards">', *cards, "</div>",
        "<h2>Timeline</h2>",
        '<p class="sub"><span class="key" style="background:#bf8700"></span>TIME_WAIT in flight'
        '<span class="key" style="background:#0969da"></span>open file descriptors'
        '<span class="key" style="background:#8250df"></span>connections opened'
        '<span class="key" style="background:#cf222e"></span>a test that broke a limit (click for its details)</p>',
        timeline(tests, anchors, runs),
    ]
    if anchors:
        body.append("<h2>Tests that broke a limit</h2>")
        body.append('<ul class="tests">' + "".join(
            f'<li><a href="#{a}">{_esc(tests[i]["nodeid"])}</a></li>' for i, a in anchors.items()) + "</ul>")
    body += ["<h2>Session health</h2>", f"<pre>{_esc(summary)}</pre>"]
    if anchors:
        body.append("<h2>Details</h2>")
        for i, a in anchors.items():
            t = tests[i]
            text = texts.get(t["nodeid"]) or text_of(t)
            body.append(f'<section id="{a}"><h3>{_esc(t["nodeid"])}</h3><pre>{_esc(text)}</pre></section>')
    if leaks:
        body.append("<h2>Session-level leaks</h2><ul>" + "".join(
            f"<li>{_esc(leak.get('what'))} - {_esc(leak.get('owner'))}</li>" for leak in leaks) + "</ul>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{_esc(title)}</title>"
            f"<style>{CSS}</style></head><body><main>\n" + "\n".join(body) + "\n</main></body></html>\n")


def write_page(path: str, document: Mapping[str, Any], title: str = "pytest-sockhygiene",
               runs: Sequence[int] | None = None, reports: int = 1) -> None:
    """Through a temporary file and a rename, making missing folders, as the JSON report is written."""
    page = render(document, title, runs=runs, reports=reports)  # (made first: a fault in it leaves no file behind)
    make_folders(path)
    write_text(path, page)
