"""A nested block of training settings (``train.boost.*``, ``train.pskd.*``, ``train.ftwt.*``):
built from the mapping Hydra hands over, validated with errors that name the full key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import ClassVar, TypeVar

BlockT = TypeVar("BlockT", bound="SettingsBlock")


class SettingsBlock:
    """Base of a frozen dataclass of one block's settings; ``block`` is its key under ``train``."""

    block: ClassVar[str]

    @classmethod
    def from_value(cls: type[BlockT], value: BlockT | Mapping) -> BlockT:
        """``value`` as this block (itself, or a mapping of its fields).

        Raises:
            ValueError: not a mapping, or naming the unknown ``train.<block>`` keys and the
                valid ones.
        """
        if isinstance(value, cls):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(
                f"invalid training config: train.{cls.block} must be a mapping, got {value!r}"
            )
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(value) - set(valid))
        if unknown:
            names = ", ".join(f"train.{cls.block}.{key}" for key in unknown)
            raise ValueError(f"invalid training config: unknown key(s) {names}; valid: {valid}")
        return cls(**value)

    def check(self, checks: Mapping[str, bool], hint: str = "") -> None:
        """Raise a ``ValueError`` naming every setting whose check is false (and ``hint``)."""
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"train.{self.block}.{name}={getattr(self, name)!r}" for name in bad)
            raise ValueError(f"invalid training config: {values}{hint}")
