"""Flow factories: recording, the policy, rebuilding engines from flow details."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import legato
import legato.engine as le
from legato import errors
from legato.engine.factories import FactoryPolicy, flow_from_detail, save_factory_details
from legato.flow import LinearFlow, Task
from legato.flow.factory import registered_factories, registered_factory
from legato.persistence.memory import MemoryPersistence
from legato.persistence.models import FlowDetail, LogBook
from legato.states import FlowState
from legato.testing.conductor import steps_flow as imported_factory  # noqa: F401 (bait)

#: Every call of a bait below appends here: a refused name must never call anything.
CALLS: list[str] = []


class Echo(Task):
    def execute(self, word: str) -> str:
        return word


@legato.flow_factory
def make_flow(count: int, *, prefix: str = "e") -> LinearFlow:
    return LinearFlow("made").add(*(Echo(f"{prefix}{i}", provides=f"{prefix}{i}")
                                    for i in range(count)))


def unregistered_factory() -> LinearFlow:
    return LinearFlow("other").add(Echo("x"))


class Holder:
    def method(self) -> LinearFlow:
        return LinearFlow("m")


class Bait:
    """Reachable from this module by walking attributes; calling any of it is recorded."""

    def __init__(self, *args: Any) -> None:
        CALLS.append("Bait()")

    def __call__(self, *args: Any) -> LinearFlow:
        CALLS.append("bait()")
        return LinearFlow("bait")

    def method(self, *args: Any) -> LinearFlow:
        CALLS.append("bait.method()")
        return LinearFlow("bait")

    @staticmethod
    def static(*args: Any) -> LinearFlow:
        CALLS.append("Bait.static()")
        return LinearFlow("bait")


bait = Bait.__new__(Bait)
getcwd = os.getcwd  # a builtin defined elsewhere, under a name of this module


def _saved_detail(persistence: MemoryPersistence) -> FlowDetail:
    book = LogBook("b")
    fd = FlowDetail("f")
    book.add(fd)
    persistence.save_logbook(book)
    return fd


def test_save_and_load_round_trip() -> None:
    persistence = MemoryPersistence()
    fd = _saved_detail(persistence)
    save_factory_details(fd, make_flow, [2], {"prefix": "w"}, persistence=persistence)
    stored = persistence.get_flow_details(fd.uuid)
    assert stored.meta["factory"] == {"name": f"{__name__}:make_flow", "args": [2],
                                      "kwargs": {"prefix": "w"}}
    engine = le.load_from_detail(stored, store={"word": "hi"}, persistence=persistence,
                                 policy=FactoryPolicy())
    engine.run()
    assert engine.storage.fetch_all() == {"word": "hi", "w0": "hi", "w1": "hi"}
    assert persistence.get_flow_details(fd.uuid).state == FlowState.SUCCESS


def test_registry_lists_decorated_factories() -> None:
    assert registered_factories()[f"{__name__}:make_flow"] is make_flow
    assert registered_factory(f"{__name__}:make_flow") is make_flow
    assert registered_factory(f"{__name__}:no_such_factory") is None


@pytest.mark.parametrize("factory", [lambda: None, Holder().method])
def test_unnameable_factories_refused(factory: Any) -> None:
    persistence = MemoryPersistence()
    with pytest.raises(ValueError):
        save_factory_details(_saved_detail(persistence), factory, persistence=persistence)


def test_local_function_refused() -> None:
    def local() -> LinearFlow:
        return LinearFlow("l")

    persistence = MemoryPersistence()
    with pytest.raises(ValueError, match=r"module:function|resolve"):
        save_factory_details(_saved_detail(persistence), local, persistence=persistence)


def test_non_json_args_refused() -> None:
    persistence = MemoryPersistence()
    with pytest.raises(ValueError, match="JSON"):
        save_factory_details(_saved_detail(persistence), make_flow, [object()],
                             persistence=persistence)


def test_policy_prefix_matches_whole_segments() -> None:
    policy = FactoryPolicy(["myapp.flows"])
    assert policy.is_allowed_module("myapp.flows")
    assert policy.is_allowed_module("myapp.flows.billing")
    assert not policy.is_allowed_module("myapp.flowsevil")
    assert not policy.is_allowed_module("myapp")


def test_unregistered_factory_is_refused_even_under_an_allowed_prefix() -> None:
    name = f"{__name__}:unregistered_factory"
    for policy in (FactoryPolicy(), FactoryPolicy([__name__])):
        with pytest.raises(errors.DisallowedFactory) as info:
            policy.resolve(name)
        assert info.value.factory_name == name


def test_allowed_prefix_imports_the_module_so_its_registered_factories_run() -> None:
    code = (
        "import sys\n"
        "from legato import errors\n"
        "from legato.engine.factories import FactoryPolicy\n"
        "name = 'legato.testing.conductor:add_flow'\n"
        "assert 'legato.testing.conductor' not in sys.modules\n"
        "try:\n"
        "    FactoryPolicy().resolve(name)\n"
        "except errors.DisallowedFactory:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('not refused')\n"
        "assert 'legato.testing.conductor' not in sys.modules, 'module was imported'\n"
        "factory = FactoryPolicy(['legato.testing']).resolve(name)\n"
        "print(factory.__module__, factory.__qualname__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "legato.testing.conductor add_flow"


@pytest.mark.parametrize("qualname", [
    "os.getcwd",  # walks into a module this one imports (the `legato.demo:os.system` attack)
    "os.system",
    "subprocess.run",
    "bait.method",  # walks into an object
    "Bait.static",  # a static method, reached by a dotted name
    "Bait",  # a class: calling it constructs an instance
    "bait",  # a callable instance
    "getcwd",  # a builtin bound to a name of this module
    "imported_factory",  # a registered factory of another module, imported here
    "make_flow.__call__",
    "__builtins__",
])
@pytest.mark.parametrize("prefixes", [[], [__name__]])
def test_names_that_are_not_functions_defined_in_the_module_are_refused(
        qualname: str, prefixes: list[str], tmp_path: Any) -> None:
    CALLS.clear()
    marker = tmp_path / "marker"
    fd = FlowDetail("f", meta={"factory": {"name": f"{__name__}:{qualname}",
                                           "args": [f"touch {marker}"], "kwargs": {}}})
    with pytest.raises((errors.DisallowedFactory, errors.NotFound)):
        flow_from_detail(fd, policy=FactoryPolicy(prefixes))
    assert CALLS == []
    assert not marker.exists()


def test_registry_refuses_what_a_name_cannot_reach() -> None:
    with pytest.raises(ValueError):
        legato.flow_factory(Holder)
    with pytest.raises(ValueError):
        legato.flow_factory(os.getcwd)
    with pytest.raises(ValueError):
        legato.flow_factory(Bait.static)  # "Bait.static": a dotted name is never resolved


def test_disallowed_factory_module_is_never_imported() -> None:
    code = (
        "import sys\n"
        "from legato import errors\n"
        "from legato.engine.factories import FactoryPolicy, flow_from_detail\n"
        "from legato.persistence.models import FlowDetail\n"
        "fd = FlowDetail('f', meta={'factory': {'name': 'json.tool:main', 'args': [],"
        " 'kwargs': {}}})\n"
        "assert 'json.tool' not in sys.modules\n"
        "try:\n"
        "    flow_from_detail(fd, policy=FactoryPolicy(['json.too', 'jsonx']))\n"
        "except errors.DisallowedFactory:\n"
        "    pass\n"
        "else:\n"
        "    raise SystemExit('not refused')\n"
        "assert 'json.tool' not in sys.modules, 'module was imported'\n"
        "print('refused')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "refused"


def test_missing_and_malformed_records() -> None:
    policy = FactoryPolicy([__name__])
    with pytest.raises(errors.NotFound):
        flow_from_detail(FlowDetail("f"), policy=policy)
    with pytest.raises(ValueError):
        flow_from_detail(FlowDetail("f", meta={"factory": "nope"}), policy=policy)
    with pytest.raises(ValueError):
        flow_from_detail(FlowDetail("f", meta={"factory": {"name": "no-colon"}}),
                         policy=policy)
    with pytest.raises(ValueError):
        flow_from_detail(FlowDetail("f", meta={"factory": {"name": f"{__name__}:make_flow",
                                                           "args": "x"}}), policy=policy)
    with pytest.raises(errors.NotFound):
        flow_from_detail(FlowDetail("f", meta={"factory": {"name": f"{__name__}:missing"}}),
                         policy=policy)


def test_entry_point_factories_are_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata as md

    ep = md.EntryPoint(name="demo", value=f"{__name__}:unregistered_factory",
                       group="legato.flow_factories")
    real = md.entry_points

    def fake_entry_points(**kwargs: Any) -> Any:
        if kwargs.get("group") == "legato.flow_factories":
            return md.EntryPoints([ep])
        return real(**kwargs)

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    assert FactoryPolicy().resolve(f"{__name__}:unregistered_factory") is unregistered_factory


def test_record_factory_sets_the_record_without_writing() -> None:
    from legato.engine.factories import record_factory

    fd = FlowDetail("unsaved")
    assert record_factory(fd, make_flow, [2], {"prefix": "w"}) is fd
    assert fd.meta["factory"] == {"name": f"{__name__}:make_flow", "args": [2],
                                  "kwargs": {"prefix": "w"}}
    with pytest.raises(ValueError, match="JSON"):
        record_factory(FlowDetail("bad"), make_flow, [object()])
