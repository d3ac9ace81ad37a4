"""The version matrix: every version range pyproject.toml claims is one that CI ran.

    nox -l                 # the sessions
    nox                    # all of them (what .ci/run does)
    nox -s "py3.9-floor"   # one

The claims are Python >= 3.9, pytest >= 7, pluggy >= 1.2, psutil >= 5.9 and httpx >= 0.23. The full cross product
(5 Pythons x 3 pytest x 3 httpx) would take over an hour on CI's 2 cores, so the matrix is a subset in which every
value of every axis appears at least once, and the oldest of everything meets in one session (``floor``):

    =================  ==========  ================  ===========================  ====================
    session            Python      pytest            httpx (httpcore)             tests
    =================  ==========  ================  ===========================  ====================
    README command     3.11        newest            newest (1.x)                 all, both backends
    floor              3.9         7.0 (pluggy 1.2,  0.23 (0.16)                  all, both backends
                                   psutil 5.9.0)
    pytest8-httpx27    3.10        8.x               0.27 with httpcore 1.0.2     all, linux backend
    pytest8            3.12        8.x               newest (1.x)                 all, linux backend
    pytest91-httpx023  3.13        9.1               0.23.3 (0.16)                all, linux backend
    niquests           3.12        newest            newest, niquests and         tests/test_niquests.py
                                                     urllib3-future
    =================  ==========  ================  ===========================  ====================

pytest 9.0 and 9.1 read the plugin's ini keys as typed strings, where 9.2 and 8 take numbers
(docs/configuration.md), so the 3.13 session runs 9.1; and it runs httpx 0.23.3, the floor the package claims on
3.13 (pyproject.toml's test extra). httpcore < 1.0.3 names the pool's connection list differently (the tracker must
not depend on it), and httpx 0.23-0.24 pull httpcore 0.15-0.17: both are covered. The README's own command (run by
.ci/run) is the newest of everything on the machine's default Python, so no session repeats it.

Sessions other than ``floor`` run every test on the ``linux`` backend only (``-k "not psutil"``, which also drops
the few tests named after psutil): the psutil backend depends on the psutil version, not on pytest's or httpx's,
and it runs in full in the README command (newest psutil) and in ``floor`` (psutil 5.9.0). That halves those
sessions and keeps .ci/run within its time budget.

Each session installs the test extra's packages itself, minus the ones that cannot be installed beside its pins
(listed in ``without``; tests that need one skip with ``pytest.importorskip``), with the versions of the
third-party pytest plugins that support that pytest pinned, so that the resolver never has to search:

* httpx2 requires Python >= 3.10, and its h11 cannot be installed beside httpcore < 1.0.3;
* pytest-httpx pins one httpx minor and a pytest range: 0.21 (httpx 0.23, pytest < 8), 0.30 (httpx 0.27,
  pytest < 9); no release supports httpx 0.27 with pytest 9.

uv (pinned in ``.ci/matrix``) makes each session's venv and installs into it from PyPI: about 15 s a session
instead of about a minute with pip (the matrix is most of .ci/run's time). uv reads no pip configuration, so a
machine's pip index settings do not apply to these sessions. The package is built from the checkout afresh in
every session (``--reinstall-package``), and gevent is taken from a wheel only (``--only-binary``: its newest
release that still admits Python 3.9 has no wheel for it, and building it took two minutes).

Each session also runs the demo (``python -m pytest_sockhygiene.demo``), whose clients are httpx's.

The interpreters: nox looks for ``python3.X`` on PATH. Where they are pyenv shims that only answer for the
pyenv version in force, ``PYENV_VERSION`` is set to every installed 3.9-3.13 (the current one first, so that
``python3`` stays what it was).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
# uv makes the session venvs and installs into them (the module docstring says why).
nox.options.default_venv_backend = "uv"
nox.options.error_on_missing_interpreters = True
nox.options.reuse_existing_virtualenvs = False

# The test extra's packages (pyproject.toml is the source of truth: read below, so that a package added there is
# installed here too).
try:
    import tomllib
except ImportError:  # Python < 3.11 running nox
    tomllib = None  # type: ignore[assignment]


def _test_extra() -> list[str]:
    if tomllib is None:
        raise SystemExit("run nox with Python >= 3.11 (it reads pyproject.toml with tomllib)")
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["optional-dependencies"]["test"])


def _name(requirement: str) -> str:
    for sep in "<>=!~[; ":
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower()


@dataclass(frozen=True)
class Combo:
    name: str
    python: str
    pins: tuple[str, ...]
    without: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ("-k", "not psutil")
    only: tuple[str, ...] = ()
    """Install only these of the test extra (with the pins), for a session that runs a few tests."""
    demo: bool = True
    imports: str = ""
    """A module the session must import before its tests run: what it exists to run beside is really there."""

    def requirements(self) -> list[str]:
        pinned = {_name(p) for p in self.pins}
        dropped = {_name(w) for w in self.without}
        base = [r for r in _test_extra() if _name(r) not in pinned | dropped
                and (not self.only or _name(r) in self.only)]
        return [*base, *self.pins]


MATRIX = [
    Combo(
        "floor", "3.9",
        pins=("pytest==7.0.*", "pluggy==1.2.*", "psutil==5.9.0", "httpx==0.23.*",
              "pytest-httpx==0.21.*", "pytest-asyncio==0.23.*", "respx==0.21.*", "pytest-socket==0.7.*"),
        without=("httpx2",),
        pytest_args=(),
    ),
    Combo(
        "pytest8-httpx27", "3.10",
        pins=("pytest>=8,<9", "httpx==0.27.*", "httpcore<1.0.3", "pytest-httpx==0.30.*"),
        without=("httpx2",),
    ),
    Combo(
        "pytest8", "3.12",
        pins=("pytest>=8,<9", "httpx>=0.28", "pytest-httpx==0.35.*"),
    ),
    Combo(
        "pytest91-httpx023", "3.13",
        pins=("pytest>=9.0,<9.2", "httpx==0.23.3", "respx==0.21.*"),
        without=("httpx2", "pytest-httpx"),
    ),
    # niquests brings urllib3-future, which installs itself as `urllib3` over the real one: only its own tests run
    # beside it (tests/test_niquests.py; they skip everywhere else)
    Combo(
        "niquests", "3.12",
        pins=("niquests>=3.21",),
        only=("pytest", "pytest-xdist", "requests", "psutil", "httpx"),
        pytest_args=("-k", "niquests"),
        demo=False,
        imports="urllib3.util.traffic_police",  # urllib3-future's, not the real urllib3's
    ),
]


def _pyenv_versions() -> None:
    """Make pyenv's shims answer for every installed 3.9-3.13 (see the module docstring)."""
    pyenv = shutil.which("pyenv")
    if not pyenv or os.environ.get("PYENV_VERSION", "").count(":"):
        return
    try:
        current = subprocess.run([pyenv, "version-name"], capture_output=True, text=True, check=True).stdout.strip()
        installed = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True,
                                   check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return
    wanted = []
    for minor in ("3.9", "3.10", "3.11", "3.12", "3.13"):
        matches = sorted((v for v in installed if v == minor or v.startswith(minor + ".")),
                         key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])
        if matches:
            wanted.append(matches[-1])
    chain = [v for v in current.split(":") if v] + [v for v in wanted if v not in current.split(":")]
    os.environ["PYENV_VERSION"] = ":".join(chain)


_pyenv_versions()


_LIST_INSTALLED = """\
from importlib.metadata import distributions
for name, version in sorted({(d.metadata["Name"].lower(), d.version) for d in distributions()}):
    print(f"{name}=={version}")
"""


def _run_matrix_session(session: nox.Session, combo: Combo) -> None:
    # not editable: the package as a user installs it; built afresh each time (uv would reuse a wheel it built from
    # this directory until pyproject.toml changes, and test yesterday's code)
    # gevent from a wheel only: its newest release for Python 3.9 has none, and building it takes minutes
    session.install("--reinstall-package", "pytest-sockhygiene", "--only-binary", "gevent", str(ROOT),
                    *combo.requirements())
    # what the session really ran with, in its log (a uv venv has no pip of its own to ask)
    session.run("python", "-c", _LIST_INSTALLED, silent=False)
    if combo.imports:
        session.run("python", "-c", f"import {combo.imports}", silent=False)
    if combo.without:
        session.log(f"not installed in this session (tests that need them skip): {', '.join(combo.without)}")
    # From the repository's root the tests import the package installed above, never the checkout's copy:
    # `pytest` (not `python -m pytest`) leaves the working directory off sys.path.
    # -n 3 on CI's two cores, as the README command: the tests wait on sockets and settles as much as they compute
    # (the matrix took 1,001 s of CI's 1,402 s with -n 2)
    # .ci/matrix asks for a JUnit file per session: a failed run's messages are printed again at its end, where CI's
    # excerpt of the log shows them (the sessions' own output scrolls past it)
    reports = os.environ.get("SOCKHYGIENE_MATRIX_REPORTS")
    junit = (f"--junitxml={os.path.join(reports, session.name + '.xml')}",) if reports else ()
    session.run("pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-n", "3", *combo.pytest_args, *junit,
                *session.posargs, "tests")
    # The demo from outside the checkout: `python -m` puts the working directory first on sys.path, and from the
    # root it would run the checkout's copy (whose conftest pytest then finds installed elsewhere: a mismatch).
    if combo.demo:
        with session.chdir(session.create_tmp()):
            session.run("python", "-m", "pytest_sockhygiene.demo", "-p", "no:randomly")


for _combo in MATRIX:
    def _session(session: nox.Session, combo: Combo = _combo) -> None:
        _run_matrix_session(session, combo)

    _session.__doc__ = f"Python {_combo.python}: {', '.join(_combo.pins)}" + (
        f" (without {', '.join(_combo.without)})" if _combo.without else "")
    nox.session(python=_combo.python, name=f"py{_combo.python}-{_combo.name}")(_session)

del _combo, _session

if __name__ == "__main__":  # pragma: no cover - `python noxfile.py` is not how nox is run
    sys.exit("run: nox (pip install nox)")
