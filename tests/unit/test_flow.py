"""Flow definitions: argument inference, provides, patterns and compilation."""

from __future__ import annotations

from typing import Any

import pytest

from legato import errors
from legato.engine.compiler import compile_flow
from legato.flow import (
    AlwaysRevert,
    AlwaysRevertAll,
    Decision,
    ForEach,
    GraphFlow,
    History,
    LinearFlow,
    ParameterizedForEach,
    Task,
    Times,
    UnorderedFlow,
    task,
)


class Add(Task):
    def execute(self, a: int, b: int, scale: int = 1) -> int:
        return (a + b) * scale


def test_requires_inferred_from_execute_and_defaults_are_optional() -> None:
    t = Add("add")
    assert t.requires == {"a", "b"}
    assert t.optional == {"scale"}
    assert t.name == "add"


def test_plain_atoms_map_arguments_like_rebound_ones() -> None:
    # Without requires, rebind or inject the mapping takes a shortcut; an empty rebind takes
    # the general path, and both must agree (order included).
    plain, general = Add("plain"), Add("general", rebind={})
    assert list(plain.args.items()) == list(general.args.items()) == [("a", "a"), ("b", "b")]
    assert plain.optional_args == general.optional_args == {"scale": "scale"}


def test_default_name_is_the_class_path() -> None:
    assert Add().name == f"{__name__}.Add"


def test_rebind_dict_and_list() -> None:
    assert Add("x", rebind={"a": "left"}).requires == {"left", "b"}
    assert Add("y", rebind=["p", "q"]).requires == {"p", "q"}
    with pytest.raises(ValueError, match="unknown arguments"):
        Add("z", rebind={"nope": "x"})


def test_inject_removes_requirement() -> None:
    t = Add("add", inject={"b": 2})
    assert t.requires == {"a"}


def test_extra_requires_need_var_kwargs() -> None:
    class Kw(Task):
        def execute(self, **kwargs: Any) -> Any:
            return kwargs

    assert Kw("k", requires=["x", "y"]).requires == {"x", "y"}
    with pytest.raises(ValueError, match="kwargs"):
        Add("a", requires=["other"])


@pytest.mark.parametrize(("provides", "expected"), [
    ("total", {"total": None}),
    (("q", "r"), {"q": 0, "r": 1}),
    (["q", "r"], {"q": 0, "r": 1}),
    ({"k1", "k2"}, {"k1": "k1", "k2": "k2"}),
    ({"mine": "theirs"}, {"mine": "theirs"}),
])
def test_provides_forms(provides: Any, expected: dict[str, Any]) -> None:
    assert Add("a", provides=provides).provides_map == expected


def test_bad_provides() -> None:
    with pytest.raises(TypeError):
        Add("a", provides=3)


def test_task_decorator_bare_and_with_options() -> None:
    @task
    def plain(x: int) -> int:
        return x * 2

    @task(provides="y", name="double")
    def double(x: int) -> int:
        return x * 2

    assert plain.requires == {"x"} and plain.provides == frozenset()
    assert double.name == "double" and double.provides == {"y"}
    assert double(4) == 8  # still callable as the function
    other = double.copy(name="double2", rebind={"x": "z"})
    assert other.name == "double2" and other.requires == {"z"} and other.provides == {"y"}


def test_retry_is_not_a_child() -> None:
    with pytest.raises(TypeError):
        LinearFlow("f").add(Times(2))  # type: ignore[arg-type]


def _names(flow: LinearFlow | GraphFlow | UnorderedFlow) -> list[str]:
    return [ca.name for ca in compile_flow(flow).atoms]


def test_linear_order_and_nesting() -> None:
    inner = UnorderedFlow("u").add(Add("b1"), Add("b2"))
    flow = LinearFlow("f").add(Add("a"), inner, Add("c"))
    compiled = compile_flow(flow)
    assert _names(flow) == ["a", "b1", "b2", "c"]
    c = compiled.by_name["c"]
    assert {compiled.atoms[p].name for p in c.preds} == {"b1", "b2"}
    assert compiled.by_name["b1"].preds == compiled.by_name["b2"].preds == (0,)


def test_graph_infers_order_from_provides() -> None:
    @task(provides="x")
    def make() -> int:
        return 1

    @task(provides="y")
    def use(x: int) -> int:
        return x

    flow = GraphFlow("g").add(use, make)
    assert _names(flow) == [make.name, use.name]


def test_graph_explicit_link_and_cycle() -> None:
    a, b = Add("a"), Add("b")
    flow = GraphFlow("g").add(a, b).link(b, a)
    assert _names(flow) == ["b", "a"]
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        flow.link(a, b)
    assert _names(flow) == ["b", "a"]


class _NeedsY(Task):
    def execute(self, y: int) -> int:
        return y


class _NeedsX(Task):
    def execute(self, x: int) -> int:
        return x


def test_graph_cycle_through_inference() -> None:
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        GraphFlow("g").add(_NeedsY("p", provides="x"), _NeedsX("q", provides="y"))
    # A subflow changed after it was added can still close a cycle: the compiler finds it.
    sub = LinearFlow("sub")
    flow = GraphFlow("g").add(_NeedsY("p", provides="x"), sub)
    sub.add(_NeedsX("q", provides="y"))
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        compile_flow(flow)


def test_graph_refused_add_leaves_the_flow_usable() -> None:
    flow = GraphFlow("g").add(_NeedsY("p", provides="x"))
    with pytest.raises(errors.DependencyFailure, match=r"adding 'q'.*cycle among 'p', 'q'"):
        flow.add(_NeedsX("q", provides="y"))
    assert _names(flow) == ["p"]
    # What the refused child provided and needed is forgotten: a consumer of x still runs
    # after p, and a provider of y may now be added.
    flow.add(_NeedsX("q2", provides="z"), Add("y-maker", provides="y"))
    assert _names(flow) == ["y-maker", "p", "q2"]
    with pytest.raises(errors.DependencyFailure, match="cycle"):
        flow.link(flow.children[0], flow.children[2])  # p before y-maker: p needs y


class _CountingTask(Task):
    """Counts how often its ``provides`` is read."""

    reads = 0

    def execute(self, x: int) -> int:
        return x

    @property
    def provides(self) -> frozenset[str]:
        _CountingTask.reads += 1
        return super().provides


def test_graph_add_one_at_a_time_reads_each_child_once() -> None:
    # A chain of 200 added one call at a time: each add looks at the new child (and what it
    # can reach), not at every child again (which made large flows cubic to build).
    _CountingTask.reads = 0
    flow = GraphFlow("chain")
    for i in range(200):
        flow.add(_CountingTask(f"t{i}", provides=f"v{i}", rebind={"x": f"v{i - 1}"} if i else {}))
    assert _CountingTask.reads <= 2 * 200
    assert _names(flow)[:3] == ["t0", "t1", "t2"]
    assert _names(flow)[-1] == "t199"


def test_graph_ambiguous_providers() -> None:
    class Use(Task):
        def execute(self, x: int) -> int:
            return x

    flow = GraphFlow("g").add(Add("p1", provides="x"), Add("p2", provides="x"), Use("use"))
    with pytest.raises(errors.AmbiguousDependency, match="p1, p2"):
        compile_flow(flow)


def test_unordered_siblings_providing_one_name_are_ambiguous_to_a_later_consumer() -> None:
    class Use(Task):
        def execute(self, x: int) -> int:
            return x

    flow = LinearFlow("f").add(
        UnorderedFlow("u").add(Add("p1", provides="x"), Add("p2", provides="x")), Use("use"))
    with pytest.raises(errors.AmbiguousDependency):
        compile_flow(flow)


def test_linear_later_provider_wins() -> None:
    class Use(Task):
        def execute(self, x: int) -> int:
            return x

    flow = LinearFlow("f").add(Add("p1", provides="x"), Add("p2", provides="x"), Use("use"))
    compiled = compile_flow(flow)
    assert compiled.by_name["use"].sources["x"] == (compiled.by_name["p2"].index, None)


def test_duplicate_names_refused() -> None:
    with pytest.raises(errors.CompilationError, match="named 'a'"):
        compile_flow(LinearFlow("f").add(Add("a"), Add("a")))


def test_link_needs_children() -> None:
    with pytest.raises(errors.CompilationError):
        GraphFlow("g").add(Add("a")).link(Add("a"), Add("b"))


def test_retry_scope_comes_first_and_holds_nested_atoms() -> None:
    inner = LinearFlow("inner", retry=Times(2, name="r2")).add(Add("c"))
    flow = LinearFlow("f", retry=Times(3, name="r1")).add(Add("a"), inner)
    compiled = compile_flow(flow)
    assert _names(flow) == ["r1", "a", "r2", "c"]
    outer_scope = compiled.by_name["a"].scope
    assert outer_scope is not None and compiled.atoms[outer_scope.retry].name == "r1"
    assert [compiled.atoms[i].name for i in outer_scope.members] == ["a", "r2", "c"]
    assert compiled.by_name["r2"].scope is outer_scope


def test_flow_requires_and_provides() -> None:
    flow = LinearFlow("f").add(Add("a", provides="x"), Add("b", rebind={"a": "x"}))
    assert flow.provides == {"x"}
    assert flow.requires == {"a", "b"}


def test_builtin_retry_decisions() -> None:
    one = History([(1, {})])
    three = History([(1, {}), (2, {}), (3, {})])
    assert Times(3).on_failure(one) == Decision.RETRY
    assert Times(3).on_failure(three) == Decision.REVERT
    assert Times(3, revert_all=True).on_failure(three) == Decision.REVERT_ALL
    assert AlwaysRevert().on_failure(one) == Decision.REVERT
    assert AlwaysRevertAll().on_failure(one) == Decision.REVERT_ALL
    each = ForEach(["a", "b"])
    assert each.execute(History()) == "a" and each.execute(one) == "b"
    assert each.on_failure(one) == Decision.RETRY
    assert each.on_failure(History([(1, {}), (2, {})])) == Decision.REVERT
    param = ParameterizedForEach(rebind={"values": "choices"})
    assert param.requires == {"choices"}
    assert param.execute(one, values=[5, 6]) == 6
    assert Times(3, delay=0.5, backoff=2.0).delay(History([(1, {}), (2, {})])) == 1.0


def test_flat_linear_flow_compiles_like_any_other_flow() -> None:
    # A linear flow of atoms only takes a shortcut; nesting the same atoms one level down takes
    # the general path, and both must place and wire them alike.
    class Use(Task):
        def execute(self, x: int, a: int, scale: int = 2) -> int:
            return x * a * scale

    atoms = [Add("p1", provides="x"), Add("p2", provides={"x": "k", "y": "k"}),
             Use("use", provides="z", rebind={"a": "y"}), Add("last", inject={"b": 1})]
    flat = compile_flow(LinearFlow("flat").add(*atoms))
    nested = compile_flow(LinearFlow("outer").add(LinearFlow("inner").add(*atoms)))

    def shape(compiled: Any) -> list[tuple[Any, ...]]:
        return [(ca.atom, ca.name, ca.index, ca.is_retry, ca.preds, ca.succs, ca.scope,
                 ca.ancestors, ca.sources, ca.optional) for ca in compiled.atoms]

    assert shape(flat) == shape(nested)
    assert flat.providers == nested.providers == {"x": [0, 1], "y": [1], "z": [2]}
    assert flat.by_name["use"].sources == {"x": (1, "k"), "a": (1, "k")}
    assert flat.by_name["last"].sources == {"a": (None, "a")}
    assert flat.by_name["use"].optional == {"scale": (None, "scale")}
    assert flat.scopes == [] and flat.atoms[3].preds == (2,) and flat.atoms[0].succs == (1,)
    with pytest.raises(errors.CompilationError, match="named 'p1'"):
        compile_flow(LinearFlow("twice").add(Add("p1"), Add("p1")))


class NeedsX(Task):
    def execute(self, x: int) -> int:
        return x


class One(Task):
    def execute(self) -> int:
        return 1


def test_linear_requires_subtracts_only_what_earlier_atoms_provide() -> None:
    # t needs x and provides x: nothing before it provides x, so the flow needs x.
    assert LinearFlow("lf").add(NeedsX("t", provides="x")).requires == {"x"}
    # A later provider does not satisfy an earlier consumer.
    assert LinearFlow("lf").add(NeedsX("t"), One("o", provides="x")).requires == {"x"}
    assert LinearFlow("lf").add(One("o", provides="x"), NeedsX("t")).requires == frozenset()


def test_unordered_requires_subtracts_nothing_provided_inside() -> None:
    flow = UnorderedFlow("uf").add(One("t1", provides="x"), NeedsX("t2"))
    assert flow.requires == {"x"}


def test_graph_requires_subtracts_what_its_edges_satisfy() -> None:
    # The implicit edge t1 -> t2 satisfies x.
    assert GraphFlow("g").add(NeedsX("t2"), One("t1", provides="x")).requires == frozenset()
    # An atom needing what it provides itself has no edge for it.
    assert GraphFlow("g").add(NeedsX("t", provides="x")).requires == {"x"}
    # An explicit link carries what the earlier child provides.
    a, b = NeedsX("a", provides="y"), Add("b", rebind={"a": "y", "b": "x"})
    flow = GraphFlow("g").add(a, b).link(a, b)
    assert flow.requires == {"x"}


def test_nested_requires_compose() -> None:
    inner = UnorderedFlow("u").add(One("p", provides="x"), NeedsX("q"))
    assert LinearFlow("f").add(inner).requires == {"x"}
    assert LinearFlow("f").add(One("p", provides="x"), inner).requires == frozenset()
    assert LinearFlow("f").add(inner, One("p", provides="x")).requires == {"x"}
    # A retry runs before its scope: what it provides is there for every atom inside.
    with_retry = UnorderedFlow("r", retry=Times(2, provides="x")).add(NeedsX("t"))
    assert with_retry.requires == frozenset()
