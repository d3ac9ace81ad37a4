"""``clients.FirstAnswer`` asks a firstresult hook's implementations directly: it must answer exactly as pluggy's
own call would, for every order, ``tryfirst``, a None answer, a plugin registered later and a wrapper. Checked
against a real pluggy ``PluginManager`` with the plugin's own hookspecs."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pluggy
import pytest

from pytest_sockhygiene import hookspecs
from pytest_sockhygiene.clients import FirstAnswer


class Answers:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.asked: list[Any] = []

    @pytest.hookimpl
    def pytest_sockhygiene_client_sockets(self, client: Any) -> Any:
        self.asked.append(client)
        return self.answer


class First(Answers):
    @pytest.hookimpl(tryfirst=True)
    def pytest_sockhygiene_client_sockets(self, client: Any) -> Any:
        self.asked.append(client)
        return self.answer


class NoArgument:
    @pytest.hookimpl
    def pytest_sockhygiene_client_sockets(self) -> Any:
        return ["no argument"]


class Wrapper:
    @pytest.hookimpl(wrapper=True)
    def pytest_sockhygiene_client_sockets(self, client: Any) -> Generator[None, Any, Any]:
        answer = yield
        return ["wrapped", answer]


@pytest.fixture
def pm() -> pluggy.PluginManager:
    manager = pluggy.PluginManager("pytest")
    manager.add_hookspecs(hookspecs)
    return manager


def both(pm: pluggy.PluginManager, client: Any) -> tuple[Any, Any]:
    caller = pm.hook.pytest_sockhygiene_client_sockets
    return FirstAnswer(caller)(client), caller(client=client)


def test_no_implementation_answers_none(pm: pluggy.PluginManager) -> None:
    assert both(pm, object()) == (None, None)


def test_the_last_registered_answers_first_and_none_passes_on(pm: pluggy.PluginManager) -> None:
    older, newer, silent = Answers(["older"]), Answers(["newer"]), Answers(None)
    for plugin in (older, newer, silent):
        pm.register(plugin)
    client = object()
    assert both(pm, client) == (["newer"], ["newer"])
    assert older.asked == [] and len(newer.asked) == 2 and len(silent.asked) == 2


def test_tryfirst_answers_before_later_registrations(pm: pluggy.PluginManager) -> None:
    pm.register(First(["first"]))
    pm.register(Answers(["later"]))
    assert both(pm, object()) == (["first"], ["first"])


def test_an_implementation_without_the_argument_is_called_without_it(pm: pluggy.PluginManager) -> None:
    pm.register(Answers(None))
    pm.register(NoArgument())
    assert both(pm, object()) == (["no argument"], ["no argument"])


def test_a_plugin_registered_after_the_first_call_is_asked(pm: pluggy.PluginManager) -> None:
    pm.register(Answers(["old"]))
    ask = FirstAnswer(pm.hook.pytest_sockhygiene_client_sockets)
    assert ask(object()) == ["old"]
    pm.register(Answers(["new"]))
    assert ask(object()) == ["new"]


def test_a_wrapper_makes_it_call_the_hook(pm: pluggy.PluginManager) -> None:
    pm.register(Answers(["inner"]))
    pm.register(Wrapper())
    assert both(pm, object()) == (["wrapped", ["inner"]], ["wrapped", ["inner"]])
