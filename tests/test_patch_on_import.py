"""``PatchOnImport``: the plugin's wrapper of a standard-library method (asyncio's ``create_task``,
``ThreadPoolExecutor.submit``) goes in when the module is imported, and at uninstall the method and
``sys.meta_path`` are as they were - also when the module was never imported (the watch must not outlive the
session: pytester's in-process runs start many)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_sockhygiene.trackers.patching import PatchOnImport


class _Doubling(PatchOnImport):
    MODULE, CLASS, METHOD = "late_module_for_patch_test", "Thing", "value"

    def wrapper(self, original: Any) -> Any:
        def value(self: Any) -> int:
            return 2 * int(original(self))

        return value


def test_the_method_is_wrapped_when_its_module_is_imported_and_everything_put_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "late_module_for_patch_test.py").write_text("class Thing:\n    def value(self):\n        return 21\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_module_for_patch_test", raising=False)
    errors: list[BaseException] = []
    patch = _Doubling(errors.append)
    meta_path = list(sys.meta_path)
    patch.install()
    assert len(sys.meta_path) == len(meta_path) + 1  # waiting for the import
    import late_module_for_patch_test as mod

    assert mod.Thing().value() == 42
    patch.uninstall()
    assert mod.Thing().value() == 21 and "value" in mod.Thing.__dict__
    assert sys.meta_path == meta_path and not errors


def test_a_watch_for_a_module_never_imported_leaves_with_the_uninstall() -> None:
    class _Never(_Doubling):
        MODULE = "a_module_nobody_imports_here"

    meta_path = list(sys.meta_path)
    patch = _Never(lambda e: None)
    patch.install()
    assert sys.meta_path != meta_path
    patch.uninstall()
    assert sys.meta_path == meta_path


def test_an_imported_module_is_wrapped_at_once_without_a_watch_in_the_import_system() -> None:
    import concurrent.futures.thread as thread_mod

    from pytest_sockhygiene.pools import JobOrigins

    before = thread_mod.ThreadPoolExecutor.__dict__["submit"]
    meta_path = list(sys.meta_path)
    patch = JobOrigins(lambda: False, lambda e: None)
    patch.install()
    try:
        assert thread_mod.ThreadPoolExecutor.__dict__["submit"] is not before
        assert sys.meta_path == meta_path
        with thread_mod.ThreadPoolExecutor(1) as pool:  # not recording: the job runs as it was given
            assert pool.submit(lambda x: x + 1, 1).result() == 2
    finally:
        patch.uninstall()
    assert thread_mod.ThreadPoolExecutor.__dict__["submit"] is before


def test_a_modules_function_is_wrapped_and_put_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``CLASS`` empty: the module's own function (``anyio.to_thread.run_sync``) is what is wrapped."""

    class _DoublingFunction(PatchOnImport):
        MODULE, CLASS, METHOD = "late_function_module_for_patch_test", "", "value"

        def wrapper(self, original: Any) -> Any:
            return lambda: 2 * int(original())

    (tmp_path / "late_function_module_for_patch_test.py").write_text("def value():\n    return 21\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_function_module_for_patch_test", raising=False)
    patch = _DoublingFunction(lambda e: None)
    patch.install()
    import late_function_module_for_patch_test as mod

    try:
        assert mod.value() == 42
    finally:
        patch.uninstall()
    assert mod.value() == 21 and mod.value.__module__ == "late_function_module_for_patch_test"
