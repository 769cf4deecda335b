"""The plugin's rule for the async fixtures: who may use them, and what to say if not.

pytest-trio runs async fixtures; a test that cannot run them (pytest-trio missing, a
sync test, an async test trio does not run) gets a usage error that names the fix
instead of the generic message pytest would give, or a bare internal assertion.
"""

from __future__ import annotations

import inspect

import pytest


def _test_function(item: pytest.Item) -> object:
    function = getattr(item, "obj", None)
    # A hypothesis test is a sync wrapper around the user's (maybe async) function.
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", None)
    return inner if inner is not None else function


def is_async(function: object) -> bool:
    return inspect.iscoroutinefunction(function)


def _trio_mode(config: pytest.Config) -> bool:
    try:
        return bool(config.getini("trio_mode"))
    except ValueError:  # pytest-trio is not there to declare the option
        return False


def trio_problem(item: pytest.Item, used: list[str]) -> str | None:
    """Why ``item`` cannot run the async fixtures ``used``, or None if it can."""
    if len(used) == 1:
        fixtures, works = f"the async fixture {used[0]}", "works"
    else:
        fixtures, works = f"the async fixtures {', '.join(used[:-1])} and {used[-1]}", "work"
    if not item.config.pluginmanager.hasplugin("trio"):
        return (
            f"{item.name} uses {fixtures}, which pytest-trio runs, and pytest-trio is not "
            "installed (or was disabled with -p no:trio). To fix it, install pytest-trio "
            "(pip install pytest-trio)."
        )
    if not is_async(_test_function(item)):
        how = "make it an async def test"
        if not _trio_mode(item.config):
            how += " marked @pytest.mark.trio (or set trio_mode = true)"
        return (
            f"{item.name} is a regular (sync) test function, but it uses {fixtures}, "
            f"which only {works} in an async trio test. To fix it, {how}."
        )
    if item.get_closest_marker("trio") is None:
        return (
            f"{item.name} uses {fixtures}, which only {works} in a trio test. To fix it, "
            "mark it @pytest.mark.trio, or set trio_mode = true."
        )
    return None
