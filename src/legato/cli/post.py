"""``legato post FACTORY``: record a flow factory in a new logbook and post a job for it."""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging
import os
import sys
from typing import Annotated, Any

import typer

from legato import _tracing, operations
from legato.cli import _context
from legato.flow.factory import factory_name, registered_factories
from legato.states import JobPriority

__all__ = ["parse_store", "register", "resolve_factory"]

logger = logging.getLogger(__name__)


def resolve_factory(name: str) -> Any:
    """Import ``module:function`` in this process and return the callable.

    Raises:
        ValueError: malformed name, module or attribute missing, or not callable.
    """
    module_name, sep, qualname = name.partition(":")
    if not sep or not module_name or not qualname.isidentifier():
        raise ValueError(f"factory must be written module:function, got {name!r}")
    if "" not in sys.path and "." not in sys.path:
        # Like `python -m`, let factories in the current directory be found.
        sys.path.insert(0, "")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import factory module {module_name!r}: {exc}") from exc
    try:
        target = getattr(target, qualname)
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no {qualname!r}") from None
    if not callable(target):
        raise ValueError(f"factory {name!r} is not callable")
    return target


def parse_store(text: str | None) -> dict[str, Any]:
    """Parse ``--store`` JSON; it must be an object."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--store is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError("--store nests too deep to decode") from None
    if not isinstance(value, dict):
        raise ValueError("--store must be a JSON object, e.g. '{\"x\": 1}'")
    return value


def _parse_arg(text: str) -> Any:
    """A factory argument: JSON when it parses (``3``, ``true``, ``[1,2]``), else a string."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return text


def _parse_kwargs(items: list[str]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--kwarg must be NAME=VALUE, got {item!r}")
        kwargs[key] = _parse_arg(value)
    return kwargs


def post(
    ctx: typer.Context,
    factory: Annotated[str, typer.Argument(help="The flow factory, as module:qualname.")],
    store: Annotated[str | None, typer.Option(
        "--store", metavar="JSON", help="Inputs for the flow, a JSON object.")] = None,
    priority: Annotated[str, typer.Option(
        "--priority", help="VERY_HIGH, HIGH, NORMAL, LOW or VERY_LOW.")] = "NORMAL",
    name: Annotated[str | None, typer.Option(
        "--name", help="Job (and logbook) name; default the factory's name.")] = None,
    arg: Annotated[list[str] | None, typer.Option(
        "--arg", metavar="VALUE",
        help="Positional argument for the factory (JSON, else a string); repeatable.")] = None,
    kwarg: Annotated[list[str] | None, typer.Option(
        "--kwarg", metavar="NAME=VALUE",
        help="Keyword argument for the factory (value JSON, else a string); repeatable.")] = None,
    delay: Annotated[float | None, typer.Option(
        "--delay", metavar="SECONDS", help="Not claimable before this many seconds.")] = None,
) -> None:
    """Post a job that runs FACTORY's flow; prints the job's uuid."""
    settings: _context.Settings = ctx.obj
    inputs = parse_store(store)
    job_priority = JobPriority.parse(int(priority) if priority.lstrip("-").isdigit()
                                     else priority)
    args = [_parse_arg(a) for a in arg or ()]
    kwargs = _parse_kwargs(kwarg or [])
    fn = resolve_factory(factory)
    if factory_name(fn) not in registered_factories():
        logger.warning("%s is not registered with @legato.flow_factory: conductors refuse it "
                       "unless a legato.flow_factories entry point names it", factory)
    spec = operations.job_spec(fn, args=args, kwargs=kwargs, store=inputs,
                               name=name or factory, priority=job_priority, delay=delay)
    try:
        spec = dataclasses.replace(spec, trace=_tracing.from_environment(os.environ))
    except ValueError as exc:
        logger.warning("%s; the job is posted without a trace", exc)
    with _context.open_board(settings) as (board, backend):
        posted = operations.post(board, backend, spec)
    if settings.out.is_json:
        settings.out.json(posted)
    else:
        print(posted["uuid"])


def register(app: typer.Typer) -> None:
    app.command("post")(post)
