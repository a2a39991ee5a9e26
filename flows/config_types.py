"""Config values checked against the types the typed settings declare.

Hydra parses an override by its text (``train.batch_size=abc`` is a string, ``seed=1.5`` a
float) and the settings are plain dataclasses, which take any value: without this check a
string reaches a comparison and fails with Python's ``TypeError``, ``"no"`` switches a flag on
(``bool("no")`` is true) and ``1.5`` becomes seed 1. Fields declared as ``int``, ``float``,
``bool``, ``str``, a union of those (with ``None``) or a ``tuple[<one of those>, ...]`` are
checked; the classes validate the rest (ranges, choices, nested shapes) themselves. A field whose
default is a dataclass (e.g. ``train.boost``) is checked the same way when it is given as a
mapping. An integer given for a text field becomes its text (a column or folder named ``64``).
"""

from __future__ import annotations

import dataclasses
import types
import typing

from flows.config_errors import unknown_setting

_SCALARS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_NAMES[type(None)] = "null"
_PLURALS = {int: "integers", float: "numbers", bool: "true/false values", str: "strings"}


def checked_values(cls, values: dict, prefix: str) -> tuple[dict, list[str]]:
    """``values`` for dataclass ``cls``, and ``"<prefix>.<field>=<value>: expected <type>"`` for
    each value a scalar field cannot hold (nested dataclass fields included), or a problem naming
    each key that is no field of ``cls`` (e.g. ``+train.epoch=3``). An integer given
    for a field that only takes text (a path, a column name) becomes its text: Hydra parses
    ``data.label_column=64`` as a number."""
    if not dataclasses.is_dataclass(cls):
        return values, []
    values, problems = dict(values), []
    names = [spec.name for spec in dataclasses.fields(cls) if spec.init]
    problems += [unknown_setting(prefix, key, names) for key in values if key not in names]
    for spec in dataclasses.fields(cls):
        if spec.name not in values:
            continue
        value, key = values[spec.name], f"{prefix}.{spec.name}"
        nested = spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        if isinstance(value, dict) and dataclasses.is_dataclass(nested):
            values[spec.name], found = checked_values(nested, value, key)
            problems += found
            continue
        values[spec.name], problem = _checked_field(key, value, spec.type)
        if problem:
            problems.append(problem)
    return values, problems


def _checked_field(key: str, value, annotation):
    element = sequence_type(annotation)
    if element is not None:
        return _checked_sequence(key, value, *element)
    allowed = scalar_types(annotation)
    if allowed and _names_only(allowed) and _holds(int, value):
        value = str(value)
    return value, scalar_problem(key, value, allowed)


def sequence_type(annotation) -> tuple[type, bool] | None:
    """``(element type, None allowed)`` of a ``tuple[<scalar>, ...]`` annotation (a string, as
    ``from __future__`` leaves it), optionally ``| None``; None for anything else."""
    if not isinstance(annotation, str):
        return None
    parts = [part.strip() for part in annotation.split("|")]
    nullable = "None" in parts
    rest = [part for part in parts if part != "None"]
    if len(rest) != 1 or not (rest[0].startswith("tuple[") and rest[0].endswith(", ...]")):
        return None
    element = _SCALARS.get(rest[0].removeprefix("tuple[").removesuffix(", ...]"))
    return (element, nullable) if element not in (None, type(None)) else None


def _checked_sequence(key: str, value, element: type, nullable: bool):
    """``value`` as a list field of ``element`` takes it (integers for names become text), and
    the problem, if any. One text value for a list of text is a list of it
    (``federated.strategies=fedavg``; ``explain.methods=all`` is the class's shorthand)."""
    if value is None and nullable:
        return value, None
    if element is str and isinstance(value, str):
        return (value,), None
    if isinstance(value, list | tuple):
        if _names_only((element,)):
            value = type(value)(str(v) if _holds(int, v) else v for v in value)
        if all(_holds(element, v) for v in value):
            return value, None
    expected = f"a list of {_PLURALS[element]}" + (" or null" if nullable else "")
    shown = list(value) if isinstance(value, tuple) else value  # as the override was written
    return value, f"{key}={shown!r}: expected {expected}"


def _names_only(allowed) -> bool:
    """Whether a field takes text and no number (a name, a path): an integer there is text."""
    return str in allowed and not {int, float} & set(allowed)


def scalar_problem(key: str, value, allowed: tuple[type, ...] | None) -> str | None:
    """Why ``value`` is none of the ``allowed`` scalar types (None when it is one of them, or
    when ``allowed`` is None: nothing to check)."""
    if allowed is None or any(_holds(kind, value) for kind in allowed):
        return None
    expected = " or ".join(_NAMES[kind] for kind in allowed)
    return f"{key}={value!r}: expected {expected}"


def scalar_types(annotation) -> tuple[type, ...] | None:
    """The scalar types an annotation (a type, a union or its ``from __future__`` string) allows;
    None when it names anything else."""
    if isinstance(annotation, str):
        names = [part.strip() for part in annotation.split("|")]
        if all(name in _SCALARS for name in names):
            return tuple(_SCALARS[name] for name in names)
        return None
    if annotation in _NAMES:
        return (annotation,)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        parts = typing.get_args(annotation)
        return parts if all(part in _NAMES for part in parts) else None
    return None


def _holds(kind: type, value) -> bool:
    if kind is float:  # an int is a number; a bool is not
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)
