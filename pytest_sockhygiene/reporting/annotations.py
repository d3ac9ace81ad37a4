"""GitHub Actions annotations: one workflow command per violation, at the user's line that opened the socket or
created the client, so that the pull request's diff shows the problem where it was written.

``::error file=PATH,line=N,title=sockhygiene: KIND::MESSAGE`` (``::warning`` in warn mode). GitHub reads them from
the job's log (the process's stdout); the path is relative to the rootdir, which is the checkout when pytest runs
from it. The message is the violation's lines of the failure text, on one line with GitHub's escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..endpoints import ConfigError
from ..report import failure_text, violation_lines
from ..verdict import Verdict
from .records import format_origin, verdict_of

CHOICES = ("auto", "github", "off")


def enabled(cli_value: str | None, ini_value: Any, environ: Mapping[str, str]) -> bool:
    """Whether to annotate: ``github`` always, ``off`` never, ``auto`` (the default) inside GitHub Actions.
    Raises ConfigError naming the option or ini key."""
    source, value = ("--sockhygiene-annotate", cli_value) if cli_value is not None else (
        "ini 'sockhygiene_annotate'", str(ini_value or "auto"))
    choice = value.strip().lower()
    if choice not in CHOICES:
        raise ConfigError(f"{source}: unknown value {value!r}; expected one of {', '.join(CHOICES)}")
    if choice == "auto":
        return environ.get("GITHUB_ACTIONS") == "true"
    return choice == "github"


def escape_data(text: str) -> str:
    """A workflow command's message: ``%``, CR and LF escaped (GitHub shows %0A as a line break)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value: as a message, and ``:`` and ``,`` too (they delimit properties)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(level: str, message: str, title: str, file: str | None = None, line: int | None = None) -> str:
    props = []
    if file:
        props.append(f"file={escape_property(file)}")
        if line:
            props.append(f"line={int(line)}")
    props.append(f"title={escape_property(title)}")
    return f"::{level} {','.join(props)}::{escape_data(message)}"


def _where(violation: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[str | None, int | None]:
    """The first item (then the first client of its context) whose origin is known; else the test function."""
    for key in ("items", "context"):
        for item in violation.get(key) or []:
            if item.get("file") and item.get("line"):
                return str(item["file"]), int(item["line"])
    if record.get("file"):
        return str(record["file"]), int(record.get("line") or 1)
    return None, None


def record_annotations(record: Mapping[str, Any], level: str) -> list[str]:
    """One workflow command per violation of a test's record (baseline growth is one violation)."""
    if record.get("clean", True):
        return []
    nodeid = str(record["nodeid"])
    verdict, _ = verdict_of(record)
    by_kind = {v.kind: v for v in verdict.violations}
    out = []
    for v in record.get("violations", []):
        kind = str(v["kind"])
        if kind == "baseline":  # one violation per count that grew, each with its own line of the text
            _, own = verdict_of({"violations": [v]})
            lines = failure_text(nodeid, Verdict(counts={}, violations=()), format_origin, own).splitlines()[1:]
            lines = [line.strip() for line in lines]
        else:
            lines = violation_lines(by_kind[kind], format_origin, doctest=bool(record.get("doctest")))
        file, line = _where(v, record)
        out.append(command(level, "\n".join([nodeid, *lines]), f"sockhygiene: {kind}", file, line))
    return out


def workflow_commands(records: Iterable[Mapping[str, Any]], session_leaks: Iterable[Mapping[str, Any]],
                enforce: bool) -> list[str]:
    """Every violation of the run, then each session-level leak (which has no line of its own: a fixture's)."""
    level = "error" if enforce else "warning"
    out: list[str] = []
    for r in records:
        out.extend(record_annotations(r, level))
    for leak in session_leaks:
        out.append(command(level, f"{leak.get('what')} - {leak.get('owner')}: left open at session end; close it "
                           "in the fixture's teardown", "sockhygiene: session-level leak"))
    return out
