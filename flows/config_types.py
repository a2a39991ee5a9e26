"""Config values checked against the scalar types the typed settings declare.

Hydra parses an override by its text (``train.batch_size=abc`` is a string, ``seed=1.5`` a
float) and the settings are plain dataclasses, which take any value: without this check a
string reaches a comparison and fails with Python's ``TypeError``, ``"no"`` switches a flag on
(``bool("no")`` is true) and ``1.5`` becomes seed 1. Only fields declared as ``int``, ``float``,
``bool``, ``str`` or a union of those (with ``None``) are checked; the classes validate the rest
(ranges, choices, nested shapes) themselves. A field whose default is a dataclass (e.g.
``train.boost``) is checked the same way when it is given as a mapping. An integer given for a
text field becomes its text (a column or folder named ``64``).
"""

from __future__ import annotations

import dataclasses
import types
import typing

_SCALARS = {"int": int, "float": float, "bool": bool, "str": str, "None": type(None)}
_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_NAMES[type(None)] = "null"


def checked_values(cls, values: dict, prefix: str) -> tuple[dict, list[str]]:
    """``values`` for dataclass ``cls``, and ``"<prefix>.<field>=<value>: expected <type>"`` for
    each value a scalar field cannot hold (nested dataclass fields included). An integer given
    for a field that only takes text (a path, a column name) becomes its text: Hydra parses
    ``data.label_column=64`` as a number."""
    if not dataclasses.is_dataclass(cls):
        return values, []
    values, problems = dict(values), []
    for spec in dataclasses.fields(cls):
        if spec.name not in values:
            continue
        value, key = values[spec.name], f"{prefix}.{spec.name}"
        nested = spec.default_factory if spec.default_factory is not dataclasses.MISSING else None
        if isinstance(value, dict) and dataclasses.is_dataclass(nested):
            values[spec.name], found = checked_values(nested, value, key)
            problems += found
            continue
        allowed = scalar_types(spec.type)
        if allowed and str in allowed and not {int, float} & set(allowed) and _holds(int, value):
            values[spec.name] = value = str(value)
        problem = scalar_problem(key, value, allowed)
        if problem:
            problems.append(problem)
    return values, problems


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
