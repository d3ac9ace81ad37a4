"""The examples of README.md and docs/*.md, run as written, their outputs compared with the ones the docs show.

Docs drift silently: an output text changes in the code, and the page that quotes it keeps the old one. Here each
marked example runs in CI (in-process with ``pytester``, like the rest of the suite) and a changed output fails
the test that names the page and line to update.

The convention (also described at the top of docs/index.md): an HTML comment, invisible when rendered, marks the
fenced block that follows it as part of a named example::

    <!-- example: NAME -->                  the next block is a file of NAME: a python block whose first line is
                                            `# path.py` (written as shown, that line included), an ini block
                                            starting with `[pytest]` (pytest.ini), or any block with `file: PATH`
    <!-- example: NAME
    run: pytest ARGS -->                    the next block is the output of `pytest ARGS` run in NAME's directory
    <!-- example: NAME -->                  a ```console block: each `$ command` line runs in NAME's directory
                                            (`pytest` in-process, anything else with bash) and the lines under it
                                            are its output

More keys, one per line: `extends: OTHER` (start from the files of example OTHER, of any page), `expect: TEXT`
(with `run:` and no block: one line of the output), `subprocess: WHY` (run pytest in a new process: for
a run that must not see what earlier in-process runs of the example left behind), `replace: PATH: OLD => NEW`
(edit a file before the next run, for "the test now does X" steps), `setup: COMMAND` (run a command the text
describes, output not compared; `replace` and `setup` lines run in their order), `github-step: WORKFLOW: STEP NAME`
(the block is what that step of the example's workflow file writes to the job's summary page), `skip: REASON`
(shown, not run), `requires: PACKAGE, ...` (skipped where one is not installed), `pending: REASON` (expected to
fail until the change named lands: an example that shows the intended output of work in progress).

Outputs are compared as fnmatch patterns after normalising what differs from run to run: port numbers after an
IP address, `fd=N`, durations, descriptor counts and limits, the ephemeral range, absolute paths, the run
header's environment lines, dates. A line `...` in an output stands for any number of lines; otherwise the
shown lines must appear consecutively and in order in the real output (an excerpt may start and end anywhere).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from conftest import resets_between, tcp_resets_sent

ROOT = pathlib.Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

COMMENT = re.compile(r"^<!--\s*example:\s*(?P<body>.*?)(?:-->)?\s*$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,})(?P<lang>[\w-]*)\s*$")
FILE_LINE = re.compile(r"^# (?P<path>[\w./-]+\.py)$")


@dataclasses.dataclass
class Step:
    """One thing an example does, in the order of the page."""

    kind: str  # "file", "run", "console", "replace"
    where: str  # page:line of the fenced block (or of the comment), for the failure message
    path: str = ""
    text: str = ""
    command: str = ""
    expect: tuple[str, ...] = ()
    isolated: bool = False  # a run that must not see what earlier in-process runs left in this process


@dataclasses.dataclass
class Example:
    name: str
    where: str
    steps: list[Step] = dataclasses.field(default_factory=list)
    extends: str | None = None
    skip: str | None = None
    pending: str | None = None
    requires: list[str] = dataclasses.field(default_factory=list)


def _blocks(lines: Sequence[str], start: int) -> tuple[int, str, str, int]:
    """The fenced block at or after ``start``: (line index of the fence, language, dedented text, index after)."""
    for i in range(start, len(lines)):
        m = FENCE.match(lines[i])
        if not m:
            continue
        indent, fence = m["indent"], m["fence"]
        for j in range(i + 1, len(lines)):
            if lines[j].rstrip() == indent + fence:
                body = [ln[len(indent):] if ln.startswith(indent) else ln.lstrip() for ln in lines[i + 1:j]]
                return i, m["lang"], "\n".join(body) + "\n", j + 1
        raise ValueError(f"unclosed fence at line {i + 1}")
    raise ValueError(f"no fenced block after line {start}")


def _directives(lines: Sequence[str], i: int) -> tuple[dict[str, list[str]], int]:
    """The ``key: value`` lines of the example comment starting at line ``i``; and the index after it."""
    text = []
    j = i
    while True:
        text.append(lines[j])
        if "-->" in lines[j]:
            break
        j += 1
    body = "\n".join(text).strip()
    body = body[len("<!--"):body.rindex("-->")].strip()
    found: dict[str, list[str]] = {}
    order: list[tuple[str, str]] = []
    for line in body.splitlines():
        key, _, value = line.strip().partition(":")
        found.setdefault(key.strip(), []).append(value.strip())
        order.append((key.strip(), value.strip()))
    found["_order"] = [f"{k}:{v}" for k, v in order]
    return found, j + 1


def parse(page: pathlib.Path) -> list[Example]:
    """Every example marked on ``page``, with its steps in page order (an example may continue further down)."""
    rel = page.relative_to(ROOT).as_posix()
    lines = page.read_text().splitlines()
    examples: dict[str, Example] = {}
    i = 0
    while i < len(lines):
        if not lines[i].startswith("<!-- example:"):
            i += 1
            continue
        where = f"{rel}:{i + 1}"
        keys, i = _directives(lines, i)
        name = keys["example"][0]
        ex = examples.setdefault(name, Example(name, where))
        if "extends" in keys:
            ex.extends = keys["extends"][0]
        if "skip" in keys:
            ex.skip = keys["skip"][0]
        if "pending" in keys:
            ex.pending = keys["pending"][0]
        for value in keys.get("requires", []):
            ex.requires += [name.strip() for name in value.split(",") if name.strip()]
        for key, _, value in (kv.partition(":") for kv in keys["_order"]):
            if key == "replace":
                path, _, change = value.partition(":")
                old, _, new = change.partition("=>")
                old, new = (v.strip().replace("\\n", "\n") for v in (old, new))
                ex.steps.append(Step("replace", where, path=path.strip(), text=old, command=new))
            elif key == "setup":  # a command the page describes in words: run, output not compared
                ex.steps.append(Step("run", where, command=value.strip()))
        if "run" in keys and "expect" in keys:  # an output quoted in the text: no block of its own
            ex.steps.append(Step("run", where, command=keys["run"][0], expect=tuple(keys["expect"])))
            continue
        if ("run" not in keys and "file" not in keys and ("replace" in keys or "setup" in keys)
                and not _next_is_block(lines, i)):
            continue
        at, lang, text, i = _blocks(lines, i)
        where = f"{rel}:{at + 1}"
        if "run" in keys and "show" in keys:  # run it for the file it writes, shown in the block
            ex.steps.append(Step("run", where, command=keys["run"][0]))  # no output shown: none compared
            ex.steps.append(Step("show", where, path=keys["show"][0], text=text))
        elif "run" in keys:
            ex.steps.append(Step("run", where, command=keys["run"][0], text=text, isolated="subprocess" in keys))
        elif "github-step" in keys:
            ex.steps.append(Step("github-step", where, command=keys["github-step"][0], text=text))
        elif "show" in keys:
            ex.steps.append(Step("show", where, path=keys["show"][0], text=text))
        elif lang == "console":
            ex.steps.append(Step("console", where, text=text))
        else:
            ex.steps.append(Step("file", where, path=_file_name(keys, lang, text, where), text=text))
    return list(examples.values())


def _next_is_block(lines: Sequence[str], i: int) -> bool:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and bool(FENCE.match(lines[i]))


def _file_name(keys: dict[str, list[str]], lang: str, text: str, where: str) -> str:
    if "file" in keys:
        return keys["file"][0]
    first = text.splitlines()[0] if text.strip() else ""
    m = FILE_LINE.match(first)
    if lang == "python" and m:
        return m["path"]
    if lang == "ini" and first.strip() == "[pytest]":
        return "pytest.ini"
    raise ValueError(f"{where}: a file block needs a `# path.py` first line, an ini [pytest] block, or `file:`")


EXAMPLES: dict[str, Example] = {}
for _page in PAGES:
    for _ex in parse(_page):
        if _ex.name in EXAMPLES:
            raise ValueError(f"{_ex.where}: example {_ex.name!r} is also marked at {EXAMPLES[_ex.name].where}")
        EXAMPLES[_ex.name] = _ex


# -- normalising --------------------------------------------------------------------------------------------------

_IP = r"(?:\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\])"
W = "\x00"  # a wildcard in a replacement: becomes `*` after the literal text around it is escaped
NORMALISE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(rf"({_IP}):\d+"), rf"\1:{W}"),  # ports (never a file's line number: those follow a file name)
    (re.compile(r"\bfd=\d+"), f"fd={W}"),
    (re.compile(r"\bin \d+\.\d+s\b"), f"in {W}s"),  # pytest's duration
    (re.compile(r"^=+ (.* in \S+s(?: \(\S+\))?) =+$"), rf"{W}= \1 ={W}"),  # its line, centred: a longer duration
    (re.compile(r'time="[\d.]+"'), f'time="{W}"'),  # JUnit XML
    (re.compile(r"peak open file descriptors \d+ of \d+ \([\d.]+%\)"), f"peak open file descriptors {W} of {W} ({W}%)"),
    (re.compile(r"caused (\d+) of \d+ \([\d.]+%\) ephemeral ports"), rf"caused \1 of {W} ({W}%) ephemeral ports"),
    (re.compile(r"^platform .*"), f"platform {W}"),
    (re.compile(r"^rootdir: .*"), f"rootdir: {W}"),
    (re.compile(r"^plugins: .*"), f"plugins: {W}"),
    # the short summary's message after a node id: absent before pytest 7.1 for errors, cut to the terminal's width
    (re.compile(r"^((?:ERROR|FAILED) \S+) - .*"), rf"\1{W}"),
    # the standard library's line numbers differ between Python versions (socketserver.py:215 on 3.9, 216 on 3.11)
    (re.compile(r"\b((?:socketserver|threading|selectors|socket|ssl)\.py|(?:asyncio|concurrent|http)/[\w/]+\.py):\d+"),
     rf"\1:{W}"),
    (re.compile(r"\bPython \d+\.\d+\.\d+\b"), f"Python {W}"),
    (re.compile(r"^\[gw\d+\] .* -- Python .*"), f"[gw{W}] {W} -- Python {W}"),  # an xdist worker's platform
    (re.compile(r"\[gw\d+\]"), f"[gw{W}]"),
    (re.compile(r"(?:^|(?<=\s))/(?:[^\s:/]+/)+"), W),  # absolute paths: keep the file's name
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? [+-]\d{4}"), W),  # diff -u's dates
    (re.compile(r"^index [0-9a-f]+\.\.[0-9a-f]+"), f"index {W}..{W}"),  # git diff
    (re.compile(r"\bat 0x[0-9a-f]+>"), f"at 0x{W}>"),
]
ENVIRONMENT = [  # lines that plugins of this suite's test extra add, which the docs' runs did not have
    re.compile(r"^asyncio: mode="),  # pytest-asyncio's header line
    re.compile(r"^notice: other code replaced the plugin's socket hooks .*pytest_socket"),  # pytest-socket
    re.compile(r"^notice: socket hooks replaced by other code .*pytest_socket"),  # pytest-socket, with -v
]


_ASYNCIO_WARNING = re.compile(r"pytest_asyncio/plugin\.py:\d+: PytestDeprecationWarning")


def _without_asyncio_warning(actual: Sequence[str]) -> list[str]:
    """The output without pytest-asyncio's start-up deprecation warning (a block of four lines on stderr, which a
    shell example's ``2>&1``-style capture interleaves with pytest's output): the docs' runs had no pytest-asyncio."""
    out: list[str] = []
    skipping = False
    for line in actual:
        if _ASYNCIO_WARNING.search(line):
            skipping = True
            continue
        if skipping:
            if "warnings.warn(" in line:
                skipping = False
            continue
        out.append(line)
    return out


def pattern(doc_line: str) -> str:
    """An fnmatch pattern for one line of a shown output: literal except for what differs between runs."""
    for rx, repl in NORMALISE:
        doc_line = rx.sub(repl, doc_line)
    return "".join(f"[{c}]" if c in "*?[" else c for c in doc_line).replace(W, "*")


def _chunks(expected: Sequence[str]) -> list[list[str]]:
    chunks: list[list[str]] = [[]]
    for line in expected:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    return [c for c in chunks if c]


def mismatch(expected: Sequence[str], actual: Sequence[str]) -> str | None:
    """None if ``expected`` (with `...` gaps) appears in ``actual``; else what was not found, near what."""
    actual = [a.rstrip() for a in _without_asyncio_warning(actual) if not any(rx.search(a) for rx in ENVIRONMENT)]
    pos = 0
    for chunk in _chunks([e.rstrip() for e in expected]):
        pats = [pattern(e) for e in chunk]
        best = (-1, 0)  # (lines matched, at)
        for at in range(pos, len(actual)):
            n = 0
            while n < len(pats) and at + n < len(actual) and fnmatch.fnmatchcase(actual[at + n], pats[n]):
                n += 1
            if n == len(pats):
                pos = at + n
                break
            if n > best[0]:
                best = (n, at)
        else:
            n, at = best
            if n < 0:
                return f"the output ends before the shown line {chunk[0]!r}"
            got = actual[at + n] if at + n < len(actual) else "<end of output>"
            return (f"shown line {chunk[n]!r}\n  pattern {pats[n]!r}\n  nearest output line {got!r}"
                    f" (after {n} matching line(s))")
    return None


# -- running ------------------------------------------------------------------------------------------------------


class Runner:
    """Runs one example's steps in one ``pytester`` directory, which persists across its steps."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        self.dir = pytester.path

    def write(self, path: str, text: str) -> None:
        """Write a file of the example, and drop its folder's bytecode caches: a file rewritten between two runs to
        the same size within the same second (a ``replace:`` of ``3`` by ``5``) passes the caches' check of mtime and
        size, and the next process ran the old code (the inner runs in a process of their own write caches:
        conftest.py)."""
        target = self.dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        shutil.rmtree(target.parent / "__pycache__", ignore_errors=True)

    def pytest(self, command: str, isolated: bool = False) -> tuple[int, list[str]]:
        argv = shlex.split(command)
        assert argv[0] == "pytest", f"not a pytest command: {command}"
        if isolated:
            result = self.pytester.runpytest_subprocess("-p", "no:cacheprovider", *argv[1:])
            return int(result.ret), result.outlines + result.errlines
        # this suite's own test modules (test_clients, test_leaks, ...) are in sys.modules under the basenames the
        # examples use too: pytest would refuse the example's file as an "import file mismatch"
        ours = {p.stem for p in self.dir.rglob("*.py")}
        hidden = {name: sys.modules.pop(name) for name in ours if name in sys.modules}
        try:
            result = self.pytester.runpytest("-p", "no:cacheprovider", *argv[1:])
        finally:
            sys.modules.update(hidden)
        return int(result.ret), result.outlines + result.errlines

    def shell(self, command: str, isolated: bool = False) -> tuple[int, list[str]]:
        if command.startswith("pytest"):
            return self.pytest(command, isolated)
        env = dict(os.environ, PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ["PATH"]]))
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-c", command], cwd=self.dir, env=env,
                              capture_output=True, text=True, timeout=60)
        return proc.returncode, (proc.stdout + proc.stderr).splitlines()

    def run(self, step: Step) -> None:
        command, status = step.command, None
        suffix = '; echo "exit status: $?"'
        if command.endswith(suffix):
            command, status = command[: -len(suffix)], True
        expected = list(step.expect) if step.expect else step.text.splitlines()

        def attempt() -> tuple[str | None, list[str], int]:
            before = tcp_resets_sent()
            ret, out = self.shell(command, step.isolated)
            if status:
                out.append(f"exit status: {ret}")
            if step.expect:  # lines quoted in the text: each somewhere in the output
                problem = next(filter(None, (mismatch([line], out) for line in expected)), None)
            else:
                problem = mismatch(expected, out)
            return problem, out, resets_between(before)

        problem, out, resets = attempt()
        if problem and resets:
            # the kernel sent TCP resets meanwhile: under load one can end a TIME_WAIT entry, and a burst the page
            # shows reads one short (conftest.lingered). Once more; a real drift fails again.
            problem, out, _ = attempt()
        if problem:
            self.fail(step, problem, out)

    def console(self, step: Step) -> None:
        ret = 0
        for command, expected in _session(step.text):
            if command.strip() == "echo $?":  # each command runs in a shell of its own: the last one's status
                ret, out = 0, [str(ret)]
            else:
                ret, out = self.shell(command)
            problem = mismatch(expected, out) if expected else None
            if problem:
                self.fail(step, f"$ {command}\n  {problem}", out)

    def show(self, step: Step) -> None:
        """A file the run wrote: JSON is compared as a subset (an excerpt), XML pretty-printed like the page."""
        target = self.dir / step.path
        if step.path.endswith(".json"):
            shown, real = json.loads(step.text), json.loads(target.read_text())
            problem = json_subset(shown, real, step.path)
            if (problem and isinstance(shown, dict)  # an excerpt: one object from somewhere inside the file
                    and any(json_subset(shown, part, "") is None for part in _objects(real))):
                problem = None
            if problem:
                self.fail(step, problem, target.read_text().splitlines())
            return
        import xml.etree.ElementTree as ET

        tree = ET.parse(target)
        ET.indent(tree)
        out = ET.tostring(tree.getroot(), encoding="unicode").replace(" />", "/>").splitlines()
        problem = mismatch(step.text.splitlines(), out)
        if problem:
            self.fail(step, problem, out)

    def github_step(self, step: Step, example: Example) -> None:
        """Run the `run:` script of a GitHub Actions step, as GitHub does (bash -e, a summary file), and compare the
        summary it writes. The workflow is a file of the example anywhere on its page, so a summary shown above
        the workflow is still made by the workflow's own script."""
        path, _, name = step.command.partition(":")
        workflow = next(s.text for s in example.steps if s.kind == "file" and s.path == path.strip())
        script = _step_script(workflow, name.strip())
        summary = self.dir / "step-summary.md"
        summary.write_text("")
        env = dict(os.environ, GITHUB_STEP_SUMMARY=str(summary),
                   PATH=os.pathsep.join([str(pathlib.Path(sys.executable).parent), os.environ["PATH"]]))
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=self.dir,
                              env=env, capture_output=True, text=True, timeout=60)
        out = summary.read_text().splitlines()
        problem = mismatch(step.text.splitlines(), out) or (f"exit status {proc.returncode}: {proc.stderr}"
                                                            if proc.returncode else None)
        if problem:
            self.fail(step, problem, out)

    def fail(self, step: Step, problem: str, out: Sequence[str]) -> None:
        shown = "\n".join(out)
        pytest.fail(f"{step.where}: the shown output of `{step.command or step.path or 'this console block'}` no longer"
                    f" matches:\n  {problem}\n--- the real output ---\n{shown}", pytrace=False)


VARYING = {"fd", "fds", "time", "peak_open_fds", "fd_limit", "ephemeral_ports"}  # numbers that differ from run to run


def json_subset(shown: Any, real: Any, where: str) -> str | None:
    """None if the JSON ``shown`` on a page is part of ``real``: every key shown has its value (strings compared
    as normalised patterns), and every element of a shown list matches a different element of the real one."""
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return f"{where}: expected an object, got {real!r}"
        for key, value in shown.items():
            if key not in real:
                return f"{where}: no key {key!r}"
            numbers = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (value, real[key]))
            if key in VARYING and numbers:
                continue
            problem = json_subset(value, real[key], f"{where}.{key}")
            if problem:
                return problem
        return None
    if isinstance(shown, list):
        if not isinstance(real, list):
            return f"{where}: expected a list, got {real!r}"
        free = list(real)
        for i, value in enumerate(shown):
            match = next((r for r in free if json_subset(value, r, "") is None), None)
            if match is None:  # say what differs from the closest element: the one sharing most of the keys shown
                if not free:
                    return f"{where}[{i}]: nothing left to match"
                closest = max(free, key=lambda r: sum(1 for k, v in value.items() if isinstance(r, dict)
                                                      and r.get(k) == v) if isinstance(value, dict) else 0)
                return json_subset(value, closest, f"{where}[{i}]")
            free.remove(match)
        return None
    if isinstance(shown, str) and isinstance(real, str):
        return None if fnmatch.fnmatchcase(real, pattern(shown)) else f"{where}: {real!r} is not {shown!r}"
    return None if shown == real else f"{where}: {real!r} is not {shown!r}"


def _step_script(workflow: str, name: str) -> str:
    """The `run: |` script of the step called ``name`` in a workflow (read by indentation: no YAML library)."""
    lines = workflow.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {name}")
    step_indent = len(lines[start]) - len(lines[start].lstrip())
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip().startswith("- ") and len(line) - len(line.lstrip()) <= step_indent:
            break
        if line.strip() == "run: |":
            key_indent = len(line) - len(line.lstrip())
            body = []
            for more in lines[i + 1:]:
                if more.strip() and len(more) - len(more.lstrip()) <= key_indent:
                    break
                body.append(more)
            return textwrap.dedent("\n".join(body))
    raise ValueError(f"no `run: |` in step {name!r}")


def _objects(doc: Any) -> Iterator[Any]:
    """Every JSON object inside ``doc``."""
    if isinstance(doc, dict):
        yield doc
        for value in doc.values():
            yield from _objects(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _objects(value)


def _session(text: str) -> Iterator[tuple[str, list[str]]]:
    """A console block's commands (`$ ` lines, `\\` continuations joined) and the output lines under each."""
    command: str | None = None
    output: list[str] = []
    continued = False
    for line in text.splitlines():
        if continued and command is not None:
            command = command[:-1].rstrip() + " " + line.strip()
            continued = command.endswith("\\")
            continue
        if line.startswith("$ "):
            if command is not None:
                yield command, output
            command, output = line[2:], []
            continued = command.endswith("\\")
        else:
            output.append(line)
    if command is not None:
        yield command, output


def _files(extends: str) -> list[Step]:
    """The files of the example named first in ``extends`` (`NAME [PATH...]`), or only the PATHs named."""
    name, *only = extends.split()
    ex = EXAMPLES[name]
    files = (_files(ex.extends) if ex.extends else []) + [s for s in ex.steps if s.kind == "file"]
    return [s for s in files if not only or s.path in only]


def _params() -> list[Any]:
    out = []
    for ex in EXAMPLES.values():
        marks = [pytest.mark.skip(reason=ex.skip)] if ex.skip else []
        missing = [name for name in ex.requires if importlib.util.find_spec(name) is None]
        if missing:  # a package the example imports that this environment cannot have (httpx2 needs Python 3.10)
            marks.append(pytest.mark.skip(reason=f"needs {', '.join(missing)}, not installed here"))
        if ex.pending:  # the page shows the intended output; the code reaches it once the named change lands
            marks.append(pytest.mark.xfail(reason=ex.pending, strict=False))
        if any(s.kind in ("run", "console") for s in ex.steps):
            out.append(pytest.param(ex, id=f"{ex.where.split(':')[0]}::{ex.name}", marks=marks))
    return out


@pytest.mark.parametrize("example", _params())
def test_doc_example(example: Example, pytester: pytest.Pytester) -> None:
    runner = Runner(pytester)
    if example.extends:
        for step in _files(example.extends):
            runner.write(step.path, step.text)
    if any(s.kind == "console" and "git " in s.text for s in example.steps):
        subprocess.run(["git", "init", "-q", "."], cwd=runner.dir, check=True)
        subprocess.run(["git", "config", "user.email", "docs@example.invalid"], cwd=runner.dir, check=True)
        subprocess.run(["git", "config", "user.name", "docs"], cwd=runner.dir, check=True)
    for step in example.steps:
        if step.kind == "file":
            runner.write(step.path, step.text)
        elif step.kind == "replace":
            text = (runner.dir / step.path).read_text()
            assert step.text in text, f"{step.where}: {step.text!r} is not in {step.path}"
            runner.write(step.path, text.replace(step.text, step.command))
        elif step.kind == "run":
            runner.run(step)
        elif step.kind == "show":
            runner.show(step)
        elif step.kind == "github-step":
            runner.github_step(step, example)
        else:
            runner.console(step)


def test_every_marked_example_runs_something() -> None:
    """An example with files and no run or console step checks nothing: a marking mistake."""
    users = {ex.extends for ex in EXAMPLES.values() if ex.extends}
    idle = [ex.where for ex in EXAMPLES.values()
            if ex.name not in users and not any(s.kind in ("run", "console") for s in ex.steps)]
    assert idle == []


def test_normalising_keeps_line_numbers_and_drops_ports() -> None:
    line = "      ESTABLISHED 127.0.0.1:55020 -> 127.0.0.1:46001 fd=12, opened at test_api.py:12 in test_users"
    assert pattern(line) == "      ESTABLISHED 127.0.0.1:* -> 127.0.0.1:* fd=*, opened at test_api.py:12 in test_users"
    assert fnmatch.fnmatchcase(line.replace("55020", "1"), pattern(line))
    assert not fnmatch.fnmatchcase(line.replace("test_api.py:12", "test_api.py:11"), pattern(line))
    summary = "========================= 5 passed, 2 errors in 1.93s =========================="
    assert fnmatch.fnmatchcase("========================= 5 passed, 2 errors in 10.29s =========================",
                               pattern(summary))
    assert mismatch(["a", "...", "c [100%]"], ["x", "a", "b", "c [100%]"]) is None
    assert mismatch(["a", "c"], ["a", "b", "c"]) is not None
