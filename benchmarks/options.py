"""Scenario options: a frozen dataclass per scenario, turned into command-line flags.

A scenario declares its options once, as dataclass fields made with
:func:`option`; :func:`add_options` adds one ``--flag`` per field to an
argparse parser (``sessions_per_node`` becomes ``--sessions-per-node``) and
:func:`from_namespace` builds the dataclass back from the parsed arguments.
Supported field types: ``int``, ``float``, ``str``, ``bool`` (a switch that
defaults to False), ``Path`` and their ``| None`` forms.

Example::

    @dataclass(frozen=True, slots=True)
    class Options:
        sessions: int = option(100, "sessions to create", low=1)
        compression: bool = option(False, "offer permessage-deflate")
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["add_options", "from_namespace", "number", "option", "options_dict"]

T = TypeVar("T")


class ArgumentAdder(Protocol):
    """An argparse parser or argument group."""

    def add_argument(self, *args: Any, **kwargs: Any) -> Any: ...


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """Declare a dataclass field that is also a command-line option.

    Args:
        default: the default value (None for "computed from other options").
        help: one line for ``--help``.
        low, high: inclusive bounds checked when parsing numbers.
        metavar: name of the value in ``--help``.
        choices: allowed values of a ``str`` option.
    """
    metadata = {"help": help, "low": low, "high": high, "metavar": metavar, "choices": choices}
    return dataclasses.field(default=default, metadata=metadata)


def number(
    cast: Callable[[str], float], low: float | None = None, high: float | None = None
) -> Callable[[str], Any]:
    """Return an argparse type that casts with ``cast`` and checks ``low <= value <= high``."""

    def parse(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if low is not None and value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:g}")
        return value

    return parse


def _base_type(annotation: Any) -> type:
    """``int`` for ``int`` and ``int | None``; raise for anything unsupported."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) != 1:
            raise TypeError(f"unsupported option type {annotation!r}")
        annotation = members[0]
    if annotation not in (int, float, str, bool, Path):
        raise TypeError(f"unsupported option type {annotation!r}")
    return typing.cast(type, annotation)


def add_options(
    parser: ArgumentAdder,
    options_type: type[Any],
    defaults: Mapping[str, Any] | None = None,
) -> None:
    """Add a ``--flag`` per field of the dataclass ``options_type`` to ``parser`` (or a group).

    Args:
        defaults: overrides of the fields' defaults (a scenario that reuses
            another's options with other defaults, e.g. ``sessions-1k``).

    Raises:
        TypeError: a field has an unsupported type or was not made with :func:`option`.
    """
    hints = typing.get_type_hints(options_type)
    overrides = defaults or {}
    for field in dataclasses.fields(options_type):
        if "help" not in field.metadata:
            raise TypeError(f"{options_type.__name__}.{field.name} is not an option()")
        meta = field.metadata
        kind = _base_type(hints[field.name])
        default = overrides.get(field.name, field.default)
        flag = "--" + field.name.replace("_", "-")
        help_text = meta["help"]
        if kind is bool:
            parser.add_argument(
                flag, dest=field.name, action="store_true", default=default, help=help_text
            )
            continue
        if default is not None:
            help_text += " (default: %(default)s)"
        convert: Callable[[str], Any] = kind
        if kind in (int, float):
            convert = number(kind, meta["low"], meta["high"])
        parser.add_argument(
            flag,
            dest=field.name,
            type=convert,
            default=default,
            metavar=meta["metavar"] or field.name.upper(),
            choices=meta["choices"],
            help=help_text,
        )


def from_namespace(options_type: type[T], namespace: argparse.Namespace) -> T:
    """Build ``options_type`` from the attributes :func:`add_options` parsed."""
    values = {
        field.name: getattr(namespace, field.name)
        for field in dataclasses.fields(typing.cast(Any, options_type))
    }
    return options_type(**values)


def options_dict(options: Any) -> dict[str, object]:
    """The fields of an options dataclass as JSON-ready values (paths as strings)."""
    return {
        field.name: str(value) if isinstance(value := getattr(options, field.name), Path) else value
        for field in dataclasses.fields(options)
    }
