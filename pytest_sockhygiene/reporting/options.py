"""The CI outputs' options (``--sockhygiene-annotate``, ``--sockhygiene-html``), read once at configure time."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Mapping, Optional

from ..endpoints import ConfigError
from .annotations import enabled


@dataclasses.dataclass(frozen=True)
class CiOptions:
    annotate: bool = False
    """Print GitHub Actions workflow commands, one per violation, in the terminal summary."""
    html: Optional[str] = None
    """Where to write the session's HTML page."""


def check_html_path(path: str) -> None:
    """A path the page cannot be written to stops the run before anything runs, like the JSON report's."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ConfigError(f"--sockhygiene-html: {path!r} is a directory")
    if not os.path.isdir(directory):
        raise ConfigError(f"--sockhygiene-html: cannot write {path!r}: directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"--sockhygiene-html: cannot write {path!r}: permission denied")


def read_ci_options(annotate: Optional[str], html: Optional[str], getini: Callable[[str], Any],
                    environ: Mapping[str, str], check_writable: bool) -> CiOptions:
    """Raises ConfigError naming the option or ini key. xdist workers write nothing and check no path."""
    on = enabled(annotate, getini("sockhygiene_annotate"), environ)
    if html and check_writable:
        check_html_path(html)
    return CiOptions(annotate=on, html=html or None)
