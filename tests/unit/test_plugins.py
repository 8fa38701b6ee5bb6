"""Plugins are listed once: ``legato._plugins.BUILTINS``, which pyproject.toml's entry points
repeat exactly; and each board class says what it can do once, in its ``CAPABILITIES``."""

from __future__ import annotations

import importlib.metadata as md
import tomllib
from pathlib import Path
from typing import Any

import pytest

from legato import _plugins, errors
from legato.conductor.blocking import BlockingConductor
from legato.jobboard.base import Capabilities, JobBoard
from legato.jobboard.memory import MemoryJobBoard

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _pyproject_entry_points() -> dict[str, dict[str, str]]:
    groups = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]
    return {group: dict(plugins) for group, plugins in groups.items()
            if group.startswith("legato.")}


def test_pyproject_entry_points_are_the_builtins_both_ways() -> None:
    declared = _pyproject_entry_points()
    missing = {(g, n) for g, plugins in _plugins.BUILTINS.items() for n in plugins
               if n not in declared.get(g, {})}
    extra = {(g, n) for g, plugins in declared.items() for n in plugins
             if n not in _plugins.BUILTINS.get(g, {})}
    different = {(g, n) for g, plugins in declared.items() for n, target in plugins.items()
                 if _plugins.BUILTINS.get(g, {}).get(n, target) != target}
    assert not (missing or extra or different), (
        f"pyproject.toml disagrees with legato._plugins.BUILTINS: missing {sorted(missing)}, "
        f"not built in {sorted(extra)}, different {sorted(different)}; its entry points "
        f"should read:\n{_plugins.entry_points_toml()}")


@pytest.mark.parametrize(("group", "name", "target"), [
    (group, name, target)
    for group, plugins in _plugins.BUILTINS.items() for name, target in plugins.items()])
def test_every_builtin_loads(group: str, name: str, target: str) -> None:
    loaded = _plugins.Family(group).load(name)
    module, _, attr = target.partition(":")
    assert isinstance(loaded, type) and loaded.__name__ == attr
    assert loaded.__module__.startswith(module)


def test_the_url_schemes_of_the_boards_are_built_in() -> None:
    boards = _plugins.BUILTINS["legato.jobboards"]
    assert {"postgres", "postgresql", "rediss", "redis"} <= set(boards)


def _fake_entry_points(monkeypatch: pytest.MonkeyPatch, *eps: md.EntryPoint) -> None:
    real = md.entry_points

    def entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == "legato.conductors":
            return md.EntryPoints([ep for ep in eps
                                   if kwargs.get("name") in (None, ep.name)])
        return real(**kwargs)

    monkeypatch.setattr(md, "entry_points", entry_points)


def test_entry_points_add_plugins_and_a_builtin_name_stays_the_builtin(
        monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(
        monkeypatch,
        md.EntryPoint("blocking", "legato.jobboard.memory:MemoryJobBoard", "legato.conductors"),
        md.EntryPoint("extra", "legato.jobboard.memory:MemoryJobBoard", "legato.conductors"))
    family = _plugins.Family("legato.conductors")
    assert family.load("blocking") is BlockingConductor
    assert family.load("extra") is MemoryJobBoard
    assert family.names() == ["blocking", "extra", "nonblocking"]


def test_an_unknown_name_lists_the_known_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_entry_points(monkeypatch)
    with pytest.raises(errors.UnknownBackend, match="known: blocking, nonblocking"):
        _plugins.Family("legato.conductors").load("nope")


# -- what each board can do: one Capabilities value per board class ---------------------------

def _board_classes() -> list[type[JobBoard]]:
    family = _plugins.Family("legato.jobboards")
    classes = {family.load(name) for name in _plugins.BUILTINS["legato.jobboards"]}
    classes |= {sub for cls in list(classes) for sub in cls.__subclasses__()
                if sub.__module__.startswith("legato.jobboard.")}  # not the tests' own
    return sorted(classes, key=lambda cls: cls.__qualname__)


@pytest.mark.parametrize("cls", _board_classes(), ids=lambda cls: cls.__qualname__)
def test_every_board_class_declares_its_capabilities(cls: type[JobBoard]) -> None:
    assert isinstance(vars(cls).get("CAPABILITIES"), Capabilities), (
        f"{cls.__qualname__} declares no CAPABILITIES = Capabilities(...) of its own")
    sends = cls._send_consume_and_claim_next is not JobBoard._send_consume_and_claim_next
    assert cls.CAPABILITIES.sends_without_waiting == sends


def test_the_boards_capabilities() -> None:
    found = {cls.__qualname__: cls.CAPABILITIES for cls in _board_classes()}
    assert found == {
        "MemoryJobBoard": Capabilities(notifications=True),
        "SQLJobBoard": Capabilities(),
        "PostgresJobBoard": Capabilities(notifications=True),
        "RedisJobBoard": Capabilities(notifications=True, sends_without_waiting=True),
        "ZooKeeperJobBoard": Capabilities(notifications=True, sends_without_waiting=True,
                                          pipelined_sends=True, gathered_sends=4),
    }


def test_pipelined_sends_need_sends_without_waiting() -> None:
    with pytest.raises(ValueError, match="pipelined_sends needs sends_without_waiting"):
        Capabilities(pipelined_sends=True)


@pytest.mark.parametrize("gathered", [0, -1, True, 1.5])
def test_gathered_sends_is_a_positive_count(gathered: object) -> None:
    with pytest.raises(ValueError, match="gathered_sends must be an int >= 1"):
        Capabilities(sends_without_waiting=True, pipelined_sends=True,
                     gathered_sends=gathered)  # type: ignore[arg-type]


def test_gathered_sends_need_pipelined_sends() -> None:
    with pytest.raises(ValueError, match="gathered_sends above 1 needs pipelined_sends"):
        Capabilities(sends_without_waiting=True, gathered_sends=2)
