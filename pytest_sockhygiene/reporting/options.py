"""The CI outputs' options (``--sockhygiene-annotate``, ``--sockhygiene-html``), read once at configure time."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable

from ..outputs import check_output_path
from .annotations import enabled


@dataclasses.dataclass(frozen=True)
class CiOptions:
    annotate: bool = False
    """Print GitHub Actions workflow commands, one per violation, in the terminal summary."""
    html: str | None = None
    """Where to write the session's HTML page."""


def check_html_path(path: str) -> None:
    """Refused at start-up as the JSON report's path is (``outputs.check_output_path``): a directory, a path below a
    file, a folder that cannot be written. Missing folders are made when the page is written."""
    check_output_path("--sockhygiene-html", path, example="sockhygiene.html")


def read_ci_options(annotate: str | None, html: str | None, getini: Callable[[str], Any],
                    environ: Mapping[str, str], check_writable: bool) -> CiOptions:
    """Raises ConfigError naming the option or ini key. xdist workers write nothing and check no path."""
    on = enabled(annotate, getini("sockhygiene_annotate"), environ)
    if html is not None and check_writable:
        check_html_path(html)
    return CiOptions(annotate=on, html=html or None)
