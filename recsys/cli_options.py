"""Typer options built from the typed configs, so each default and its help have one home.

A command declares a parameter typed with a config class (``model: ModelConfig``) and names the
fields it exposes; :func:`config_options` replaces that parameter by one ``--option`` per field,
whose type, default and help come from the field, and hands the command a built config::

    @app.command()
    @config_options(model=(ModelConfig, ["d_model", Opt("n_blocks", "blocks")]))
    def train(model: ModelConfig) -> None: ...

``recsys train --help`` then shows ``--d-model`` and ``--blocks`` with the config's defaults
and descriptions. Dataclass configs work too (their fields carry no description: pass ``help``).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Opt:
    """One config field as a command-line option.

    Parameters
    ----------
    field
        The config field.
    name
        The option's name without dashes (default: the field's name with dashes), for the
        short names the CLI has always had (``--epochs`` for ``max_epochs``).
    type
        The type typer parses, where the field's own is one typer cannot (``int | str``).
    help
        Help text where the field has no description.
    """

    field: str
    name: str | None = None
    type: Any = None
    help: str | None = None

    @property
    def option(self) -> str:
        return self.name or self.field.replace("_", "-")


@dataclass(frozen=True)
class _Spec:
    """A config field as seen by the CLI: default, type and help."""

    default: Any
    annotation: Any
    help: str | None


def field_spec(cls: type, field: str) -> _Spec:
    """Default, type and description of ``field`` of a pydantic model or dataclass."""
    if issubclass(cls, BaseModel):
        info = cls.model_fields[field]
        default = info.get_default(call_default_factory=True)
        return _Spec(default, info.annotation, info.description)
    f = next(f for f in dataclasses.fields(cls) if f.name == field)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    hints = typing.get_type_hints(cls)
    return _Spec(default, hints[field], None)


def _param(group: str, cls: type, opt: Opt) -> inspect.Parameter:
    spec = field_spec(cls, opt.field)
    annotation = opt.type or spec.annotation
    default = spec.default
    if isinstance(default, tuple):  # a repeatable option: typer wants a list, None = unset
        default = None
    decls = [f"--{opt.option}/--no-{opt.option}" if annotation is bool else f"--{opt.option}"]
    option = typer.Option(*decls, help=spec.help or opt.help, show_default=default is not None)
    return inspect.Parameter(f"{group}__{opt.field}", inspect.Parameter.KEYWORD_ONLY,
                             default=default, annotation=Annotated[annotation, option])


def _build(cls: type, values: dict[str, Any]):
    """The config from the parsed options; an unset repeatable option keeps the default."""
    values = {k: v for k, v in values.items()
              if v is not None or field_spec(cls, k).default is None}
    try:
        return cls(**values)
    except (ValidationError, ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from None


_CTX = "_config_options_ctx"  # the typer.Context a command built here receives


def _given(ctx: typer.Context | None, name: str) -> bool:
    """Whether the value of parameter ``name`` was given, not taken from its default.

    Options left at their defaults stay unset in the config (its ``model_fields_set``), so that
    code can tell a user's choice from a default: the full retrain chooses an unset maximum
    length from the data. Without a context (a direct call) every value counts as given.
    """
    if ctx is None:
        return True
    source = ctx.get_parameter_source(name)
    return source is not None and source.name != "DEFAULT"


def config_options(**groups: tuple[type, Sequence[str | Opt]]) -> Callable:
    """Replace each parameter named in ``groups`` by options for the listed fields of its config.

    Parameters
    ----------
    **groups
        ``parameter=(ConfigClass, [field or Opt, ...])``: the command receives
        ``ConfigClass(**options)`` as ``parameter``; fields not listed keep their defaults.
    """
    opts = {group: (cls, [o if isinstance(o, Opt) else Opt(o) for o in fields])
            for group, (cls, fields) in groups.items()}

    def decorate(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn, include_extras=True)
        params: list[inspect.Parameter] = []
        for p in inspect.signature(fn).parameters.values():
            if p.name in opts:
                cls, fields = opts[p.name]
                params += [_param(p.name, cls, o) for o in fields]
            else:
                params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY,
                                        annotation=hints.get(p.name, p.annotation)))
        missing = set(opts) - set(inspect.signature(fn).parameters)
        if missing:
            raise TypeError(f"{fn.__name__} has no parameter {', '.join(sorted(missing))}")

        @functools.wraps(fn)
        def command(**kwargs):
            ctx = kwargs.pop(_CTX, None) or next(
                (v for v in kwargs.values() if isinstance(v, typer.Context)), None)
            for group, (cls, fields) in opts.items():
                values = {o.field: kwargs.pop(f"{group}__{o.field}") for o in fields}
                kwargs[group] = _build(cls, {k: v for k, v in values.items()
                                             if _given(ctx, f"{group}__{k}")})
            return fn(**kwargs)

        if not any(p.annotation is typer.Context for p in params):
            params.append(inspect.Parameter(_CTX, inspect.Parameter.KEYWORD_ONLY, default=None,
                                            annotation=typer.Context))
        command.__signature__ = inspect.Signature(params)
        command.__config_options__ = opts  # for tests that compare the CLI with the configs
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
