"""Session-wide settings: mode and backend from the command line and ini, with CLI beating ini."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, List, Optional

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

    @property
    def active(self) -> bool:
        return self.mode != "off"


def parse_mode(value: str, source: str) -> str:
    mode = value.strip().lower()
    if mode not in MODES:
        raise ConfigError(f"{source}: unknown mode {value!r}; expected one of {', '.join(MODES)}")
    return mode


def read_mode(cli_value: Optional[str], ini_value: Any) -> str:
    if cli_value is not None:
        return parse_mode(cli_value, "--sockhygiene")
    if ini_value:
        return parse_mode(str(ini_value), "ini 'sockhygiene'")
    return "off"


def read_settings(cli_mode: Optional[str], cli_backend: Optional[str], getini: Callable[[str], Any]) -> Settings:
    """Raises ConfigError naming the option or ini key."""
    mode = read_mode(cli_mode, getini("sockhygiene"))
    backend = (cli_backend or "auto").strip().lower()
    if backend not in BACKENDS:
        raise ConfigError(f"--sockhygiene-backend: unknown backend {cli_backend!r}; expected one of {', '.join(BACKENDS)}")
    values = {key: getini(key) for key in INI_LIMIT_KEYS + ("sockhygiene_settle", "sockhygiene_ignore")}
    return Settings(mode=mode, backend=backend, limits=limits_from_ini(values))


def rewrite_bare_flag(args: List[str]) -> None:
    """``--sockhygiene`` takes an optional value; argparse would swallow a following path as that value
    (``pytest --sockhygiene tests/``). Make a bare flag mean ``--sockhygiene=enforce`` unless a mode follows."""
    for i, arg in enumerate(args):
        if arg == "--":
            return
        if arg == "--sockhygiene":
            nxt = args[i + 1] if i + 1 < len(args) else None
            if nxt is None or nxt.strip().lower() not in MODES:
                args[i] = "--sockhygiene=enforce"
