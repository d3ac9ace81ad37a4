"""Session-wide settings: mode and backend from the command line and ini, with CLI beating ini."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Union

from .endpoints import ConfigError
from .limits import LIMIT_KEYS, Limits, limits_from_ini

MODES = ("enforce", "warn", "off")
BACKENDS = ("auto", "linux", "psutil")
INI_LIMIT_KEYS = tuple(f"sockhygiene_{k}" for k in LIMIT_KEYS)


@dataclasses.dataclass(frozen=True)
class Settings:
    mode: str
    backend: str
    limits: Limits
    library_packages: tuple[str, ...] = ()
    """Packages of the user's own whose frames are library code (``sockhygiene_library_packages``)."""

    @property
    def active(self) -> bool:
        return self.mode != "off"


def ini_value_types(pytest_version: tuple[Any, ...]) -> tuple[Any, Any]:
    """The ``addini`` types of the limit keys and of ``sockhygiene_settle``: ``None`` (a string) where that pytest
    cannot say "a number, or a word".

    pytest 9's native ``[tool.pytest]`` table hands values over as TOML typed them and checks them against the
    registered type, so a key registered as a string refuses ``sockhygiene_established = 2``. From pytest 9.2,
    ``addini`` takes a union: ``int | str`` accepts a TOML integer and still ``"unlimited"`` (and in an ini file,
    where every value is text, pytest turns ``2`` into an int and leaves ``unlimited`` a string). pytest 9.0 and
    9.1 have ``int`` and ``float`` types but no union: registering ``int`` there would refuse ``unlimited`` in every
    file, so the keys stay strings (``"2"`` in ``[tool.pytest]``; see ``read_ini``'s hint). pytest 7 and 8 have no
    typed TOML table: ``[tool.pytest.ini_options]`` values reach a plugin as strings there.
    """
    if tuple(pytest_version[:2]) >= (9, 2):
        return Union[int, str], Union[float, str]
    return None, None


def read_ini(getini: Callable[[str], Any], key: str) -> Any:
    """``getini(key)``, with pytest's own type error turned into ours, naming the key (pytest 9.0 and 9.1 raise a
    bare ``TypeError`` for a TOML number given to a string key)."""
    try:
        return getini(key)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"ini {key!r}: {e} (pytest 9.0 and 9.1 read this key as a string: quote the value in "
                          "[tool.pytest], e.g. \"2\"; pytest 9.2 and later also take numbers)") from None


def parse_mode(value: str, source: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise ConfigError(f"{source}: unknown mode {value!r}; expected one of {', '.join(MODES)}")
    return mode


def read_mode(cli_value: str | None, ini_value: Any) -> str:
    """The command line's mode, else the ini's, else off. The ini's is checked even when the command line's wins:
    a typo there passed every local run that gave ``--sockhygiene``, and broke the CI job that did not."""
    ini_mode = parse_mode(str(ini_value), "ini 'sockhygiene'") if ini_value else None
    if cli_value is not None:
        return parse_mode(cli_value, "--sockhygiene")
    return ini_mode or "off"


def read_settings(cli_mode: str | None, cli_backend: str | None, getini: Callable[[str], Any]) -> Settings:
    """Raises ConfigError naming the option or ini key."""
    mode = read_mode(cli_mode, read_ini(getini, "sockhygiene"))
    backend = (cli_backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"--sockhygiene-backend: unknown backend {cli_backend!r}; "
                          f"expected one of {', '.join(BACKENDS)}")
    values = {key: read_ini(getini, key) for key in (*INI_LIMIT_KEYS, "sockhygiene_settle", "sockhygiene_ignore")}
    packages = parse_library_packages(read_ini(getini, LIBRARY_PACKAGES_KEY))
    return Settings(mode=mode, backend=backend, limits=limits_from_ini(values), library_packages=packages)


LIBRARY_PACKAGES_KEY = "sockhygiene_library_packages"


def parse_library_packages(value: Any) -> tuple[str, ...]:
    """The ``sockhygiene_library_packages`` ini key: import names, one per line (or a TOML list). A project's own
    library, tested from its source tree, is the user's code by default (it is not installed), so a socket or
    client made inside it is named by the library's line; listed here, it is named as an installed library's is:
    "created inside mylib.Node.__init__(), called at" the test's line."""
    if value is None or value == "":
        return ()
    entries = value if isinstance(value, list) else str(value).split()
    names: list[str] = []
    for entry in entries:
        name = str(entry).strip()
        if not name:
            continue
        if not all(part.isidentifier() for part in name.split(".")):
            raise ConfigError(f"ini {LIBRARY_PACKAGES_KEY!r}: {name!r} is not a package's import name (one per "
                              "line, as in `import mylib`: mylib, or mylib.client)")
        names.append(name)
    return tuple(dict.fromkeys(names))


def rewrite_bare_flag(args: list[str]) -> None:
    """``--sockhygiene`` takes an optional value; argparse would swallow a following path as that value
    (``pytest --sockhygiene tests/``). Make a bare flag mean ``--sockhygiene=enforce`` unless a mode follows."""
    for i, arg in enumerate(args):
        if arg == "--":
            return
        if arg == "--sockhygiene":
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is None or nxt.strip().lower() not in MODES:
                args[i] = "--sockhygiene=enforce"
