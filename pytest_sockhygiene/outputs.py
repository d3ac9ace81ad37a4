"""Where results go: the JSON report and the baseline file, checked at start-up so a bad path fails fast."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

from . import baseline as baseline_mod
from .endpoints import ConfigError


@dataclasses.dataclass(frozen=True)
class Outputs:
    report: Optional[str] = None
    baseline_path: Optional[str] = None
    baseline: Optional[baseline_mod.Baseline] = None
    update: bool = False


def _check_report_path(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if os.path.isdir(path):
        raise ConfigError(f"--sockhygiene-report: {path!r} is a directory")
    if not os.path.isdir(directory):
        raise ConfigError(f"--sockhygiene-report: cannot write {path!r}: directory {directory!r} does not exist")
    if not os.access(directory, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"--sockhygiene-report: cannot write {path!r}: permission denied")


def read_outputs(report: Optional[str], baseline_path: Optional[str], update: bool, check_writable: bool) -> Outputs:
    """Raises ConfigError naming the option. Workers of xdist read the baseline but never write anything."""
    if report and check_writable:
        _check_report_path(report)
    if update and not baseline_path:
        raise ConfigError("--sockhygiene-baseline-update needs --sockhygiene-baseline=PATH")
    baseline = None
    if baseline_path:
        if update and not os.path.exists(baseline_path):
            baseline = {}
        else:
            try:
                baseline = baseline_mod.load(baseline_path)
            except ConfigError as e:
                raise ConfigError(f"--sockhygiene-baseline: {e}") from None
        if update and check_writable:
            baseline_mod.check_writable(baseline_path)
    return Outputs(report=report, baseline_path=baseline_path, baseline=baseline, update=update)


def write_json(path: str, document: Any) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
