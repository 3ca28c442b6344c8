"""CLI options derived from a config dataclass, so a knob is typed, defaulted and documented once.

    @app.command("tune")
    @config_options(TuningConfig, flags={"top_k": "--top"})
    def tune(campaign_dir: Path = typer.Argument(...), *, config: TuningConfig) -> None: ...

adds one ``--option`` per field (``--name/--no-name`` for booleans), with the field's type, default
and ``metadata["help"]``; the command receives the config built by the typed loader, so the CLI
applies exactly the checks a YAML file gets (one-line ``UserError`` on a bad value).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from typing import Any, Callable

import typer

from discovery.errors import UserError
from evaluators.typed_config import build_dataclass


def config_options(cls: type, *, flags: dict[str, str] | None = None, exclude: tuple[str, ...] = (),
                   ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    flags = flags or {}
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.name not in exclude]

    def option(f: dataclasses.Field) -> inspect.Parameter:
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        flag = flags.get(f.name, "--" + f.name.replace("_", "-"))
        decl = f"{flag}/--no-{flag[2:]}" if hints[f.name] is bool else flag
        return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                                 default=typer.Option(default, decl, help=f.metadata.get("help", "")))

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command)
        own_hints = typing.get_type_hints(command)
        params = [p.replace(annotation=own_hints.get(p.name, p.annotation))
                  for p in own.parameters.values() if p.name != "config"]
        params += [option(f) for f in fields]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in fields}
            return command(config=build_dataclass(cls, values, "", UserError), **kwargs)

        del wrapper.__wrapped__  # typer must see the signature below, not the command's own
        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
