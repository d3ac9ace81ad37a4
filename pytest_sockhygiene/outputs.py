"""Where results go: the JSON report and the baseline file.

Their paths are checked at start-up so that a typo fails fast, and written at the end of the run, creating
missing folders as ``--junitxml`` does. A write that fails at the end is never lost silently: the reporter shows
it and the run's exit status becomes 1, as pytest's own ``--junitxml`` ends (with a traceback) when its file
cannot be written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import tempfile
from collections.abc import Container, Iterable, Mapping
from typing import Any, Callable

from . import baseline as baseline_mod
from .endpoints import ConfigError


@dataclasses.dataclass(frozen=True)
class Outputs:
    report: str | None = None
    baseline_path: str | None = None
    baseline: baseline_mod.Baseline | None = None
    update: bool = False

    def given(self) -> list[str]:
        """The output options given, as the user spelled them (for the off mode's note)."""
        return [option for option, value in (("--sockhygiene-report", self.report),
                                              ("--sockhygiene-baseline", self.baseline_path),
                                              ("--sockhygiene-baseline-update", self.update)) if value]


def names_a_directory(path: str) -> bool:
    """A path that cannot become a file: it ends in a separator, or a directory is there."""
    return path.endswith(tuple(s for s in (os.sep, os.altsep, "/") if s)) or os.path.isdir(path)


def check_output_path(option: str, path: str, example: str = "sockhygiene.json") -> None:
    """Refuse at start-up a path that cannot become the file: an empty one, one that names a directory, one below
    a file, one in a folder that cannot be written. Missing folders are fine: they are created when the file is
    written. ``example``: a file name of the option's kind, for the message."""
    if not path:
        raise ConfigError(f"{option}: the path is empty; give a file path such as {example!r}")
    if names_a_directory(path):
        example = os.path.join(path, example)
        raise ConfigError(f"{option}: {path!r} names a directory; give a file path such as {example!r}")
    existing = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(existing):  # the nearest folder that exists is where the missing ones are made
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ConfigError(f"{option}: cannot write {path!r}: {existing!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise ConfigError(f"{option}: cannot write {path!r}: permission denied")
    if existing != os.path.dirname(os.path.abspath(path)):
        _probe_folder(option, path, existing)


def _probe_folder(option: str, path: str, existing: str) -> None:
    """Make and remove a folder where the missing ones of ``path`` will be made: ``os.access`` answers yes to root
    wherever the mode bits would refuse others, also under ``/proc`` and ``/sys``, where nothing can be made (a CI
    job running as root learnt so only when the run was over)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".sockhygiene-", dir=existing))
    except OSError as e:
        raise ConfigError(f"{option}: cannot write {path!r}: no folder can be made in {existing!r} "
                          f"({e.strerror or e})") from None


def check_distinct(paths: Mapping[str, str | None]) -> None:
    """Refuse two outputs given one file (option -> path; None: not given): the one written last would replace
    the other without a word - a report over the committed baseline, the page over the report, the report over
    pytest's JUnit XML. Paths are compared as they will be opened: from the current directory, links resolved."""
    seen: dict[str, str] = {}
    for option, path in paths.items():
        if not path:
            continue
        where = os.path.normcase(os.path.realpath(path))
        if where in seen:
            raise ConfigError(f"{seen[where]} and {option} name the same file {path!r}: one would overwrite the "
                              "other; give each its own path")
        seen[where] = option


def read_outputs(report: str | None, baseline_path: str | None, update: bool, check_writable: bool) -> Outputs:
    """Raises ConfigError naming the option. Workers of xdist read the baseline but never write anything."""
    if report is not None and check_writable:
        check_output_path("--sockhygiene-report", report)
    if baseline_path == "":
        raise ConfigError("--sockhygiene-baseline: the path is empty; give a file path such as "
                          "'.sockhygiene-baseline.json'")
    if update and not baseline_path:
        raise ConfigError("--sockhygiene-baseline-update needs --sockhygiene-baseline=PATH")
    baseline = None
    if baseline_path:
        if update and check_writable:
            check_output_path("--sockhygiene-baseline", baseline_path)
        if update and not os.path.exists(baseline_path):
            baseline = {}
        else:
            try:
                baseline = baseline_mod.load(baseline_path)
            except ConfigError as e:
                raise ConfigError(f"--sockhygiene-baseline: {e}") from None
    return Outputs(report=report, baseline_path=baseline_path, baseline=baseline, update=update)


def make_folders(path: str) -> None:
    """The folders on the way to an output file of the run, as ``--junitxml`` makes its own."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _replaceable(path: str) -> str | None:
    """Where a temporary file can be renamed to become ``path``'s content: the regular file it names, at the end of
    any symbolic links (so a link stays a link and its target is what changes), or a file that does not exist
    yet. None for anything else that exists - a FIFO, a device, ``/dev/stdout`` - which is written to, as
    ``--junitxml`` writes: renaming over it would replace the node itself."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return os.path.realpath(path)  # (through a dangling link: its target is made)
    return os.path.realpath(path) if stat.S_ISREG(st.st_mode) else None


def write_text(path: str, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never sees half a file; into ``path`` itself
    where it is not a regular file (``_replaceable``). An error of the write - a full disk, ``/dev/full`` -
    is raised, never taken for success."""
    target = _replaceable(path)
    if target is None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return
    tmp = f"{target}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, document: Any) -> None:
    write_text(path, json.dumps(document, indent=2, sort_keys=True) + "\n")


def write_outputs(outputs: Outputs, document: Callable[[], Any],
                  records: Callable[[], Iterable[Mapping[str, object]]], finished: Container[str]) -> list[str]:
    """Write the report and (with ``--sockhygiene-baseline-update``) the baseline; the baseline takes the counts
    of the tests in ``finished`` only (see ``baseline.updated``). Returns one message per file that could not
    be written: each is tried, and neither failure hides the other. ``document`` and ``records`` are called only
    for a file that needs them: a record is kept compact until then (a dict per test is ~20k instructions)."""
    errors: list[str] = []
    if outputs.report:
        try:
            make_folders(outputs.report)
            write_json(outputs.report, document())
        except OSError as e:
            errors.append(f"--sockhygiene-report: the report could not be written to {outputs.report!r}: "
                          f"{e.strerror or e}")
    if outputs.update and outputs.baseline_path:
        try:
            tests = baseline_mod.updated(outputs.baseline or {}, records(), finished)
            make_folders(outputs.baseline_path)
            baseline_mod.write(outputs.baseline_path, tests)
        except OSError as e:
            errors.append(f"--sockhygiene-baseline-update: the baseline could not be written to "
                          f"{outputs.baseline_path!r}: {e.strerror or e}")
    return errors
