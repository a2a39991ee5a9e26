"""Nested configs and results as MLflow params and metrics, within MLflow's limits.

MLflow keys may hold only alphanumerics, ``_ - . : /`` and spaces, at most 250 characters, and
must not look like relative paths (``a//b``, ``../x``); param values are cut at 6000 characters.
"""

from __future__ import annotations

import hashlib
import json
import math
import re

from components.redact import redact_text

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
TRUNCATED = "...[truncated]"
_BAD_KEY_CHARS = re.compile(r"[^\w.\- :]")


def safe_key(key: str) -> str:
    """``key`` with characters MLflow rejects replaced by ``_`` and cut to 250 characters (a
    short hash of the full key keeps cut keys apart)."""
    clean = _BAD_KEY_CHARS.sub("_", str(key)).strip(". ") or "_"
    clean = re.sub(r"\.{2,}", ".", clean)
    if len(clean) <= MAX_KEY_LENGTH:
        return clean
    digest = hashlib.sha1(clean.encode()).hexdigest()[:8]
    return f"{clean[: MAX_KEY_LENGTH - 9]}-{digest}"


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested mappings as ``{"a.b.c": leaf}``; lists and other leaves are kept as they are."""
    flat: dict = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def to_params(config: dict) -> dict[str, str]:
    """A nested config as MLflow params: dotted keys, values as text (JSON for lists and
    mappings, ``null`` for None) with the credentials of URLs masked, cut to MLflow's value
    limit."""
    return {safe_key(k): _param_value(v) for k, v in flatten(config).items()}


def _param_value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    text = redact_text(text)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        text = text[: MAX_PARAM_VALUE_LENGTH - len(TRUNCATED)] + TRUNCATED
    return text


def is_number(value) -> bool:
    """A finite int or float (bools are not numbers here; MLflow stores metrics as floats)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def numeric(values: dict, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested mapping as ``{prefix + dotted key: value}``; text,
    lists, None, NaN and infinities are left out."""
    return {safe_key(f"{prefix}{k}"): float(v) for k, v in flatten(values).items() if is_number(v)}


def text_values(values: dict) -> dict[str, str]:
    """The string values of a flat mapping (they become tags)."""
    return {safe_key(k): v for k, v in values.items() if isinstance(v, str)}
