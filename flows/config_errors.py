"""One-line messages for the overrides Hydra refuses, naming the nearest valid key or option.

Hydra's own messages span several lines and point the wrong way for a typo:
``train.epoch=3`` gets "Could not override 'train.epoch'. To append to your config use
+train.epoch=3", which only moves the error to the settings class; ``model=mlpp`` gets the
config search path. Here a misspelt key or option is answered with the closest valid ones
(``difflib``), and the ``+`` hint is kept for the mappings that take new keys. A value Hydra
cannot read unquoted (a path with spaces, commas or non-ASCII letters) is answered with the
quoted override, made by :func:`hydra_string`, which the flows' option forms use too.
"""

from __future__ import annotations

import difflib
import re

# Mappings whose keys are the user's to add (with a leading +): a model's parameters, the
# search space's dimensions. Every other group is a settings class with fixed fields.
OPEN_MAPPINGS = ("model.params", "search.space")

_UNKNOWN_KEY = re.compile(r"Could not override '([^']+)'")
_NOT_TO_DELETE = re.compile(r"Could not delete from config\. '([^']+)' does not exist")
_MISSING_OPTION = re.compile(r"Could not find '([^']+)'")
_AMBIGUOUS = re.compile(r"Ambiguous value for argument '([^']+)'")
_PARSE_ERROR = "See https://hydra.cc"
_FULL_KEY = re.compile(r"full_key: (\S+)")
# Option files that other options include, not choices of their own.
_NOT_CHOICES = ("base",)


def override_key(override: str) -> str:
    """The key an override sets, adds or deletes: ``train.epochs`` of ``+train.epochs=3``."""
    return override.split("=", 1)[0].lstrip("+~")


def did_you_mean(word: str, options, group: str = "") -> str:
    """``"; did you mean group.a?"`` for the ``options`` (keys of ``group``) closest to
    ``word``, else ``" (group keys: ...)"`` listing them all; empty when there are none."""
    options = sorted(str(option) for option in options)
    close = difflib.get_close_matches(word, options, n=3, cutoff=0.6)
    if close:
        names = [f"{group}.{c}".lstrip(".") for c in close]
        listed = ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else names[0]
        return f"; did you mean {listed}?"
    return f" ({group or 'top-level'} keys: {', '.join(options)})" if options else ""


def unknown_setting(group: str, key: str, names) -> str:
    """``group.key`` names no field of the settings ``group`` has (``names``)."""
    return f"{group}.{key} is not a setting of {group}{did_you_mean(key, names, group)}"


# The kind of node OmegaConf could not merge a list or a mapping into.
_MERGE_INTO = re.compile(r"object_type=(dict|list)")


def override_problem(err: Exception, overrides, composed_without) -> str:
    """A one-line account of why Hydra refused ``overrides`` (``err``, its exception).

    ``composed_without(key)`` returns the config as plain data, composed without the
    overrides that touch ``key``'s group (None when that cannot be composed either).
    """
    text = str(err)
    if match := _UNKNOWN_KEY.search(text):
        key = match[1]
        inner = _FULL_KEY.search(str(err.__cause__ or ""))
        if inner and inner[1].startswith(f"{key}."):  # a mapping value with a key ``key`` lacks
            return _unknown_inner_key(key, inner[1], _written(key, overrides), composed_without)
        return _unknown_key(key, _written(key, overrides), composed_without(key) or {})
    if match := _NOT_TO_DELETE.search(text):
        key = match[1]
        return _unknown_key(key, f"~{key}", composed_without(key) or {}, deleting=True)
    if match := _MISSING_OPTION.search(text):
        return _missing_option(match[1], text)
    if match := _AMBIGUOUS.search(text):
        key, _, value = match[1].partition("=")
        return (
            f"{match[1]}: a comma makes a list; write {key}=[{value}] for one, or quote the "
            f'value for text: "{key}={hydra_string(value)}" (the double quotes are for the shell)'
        )
    if _PARSE_ERROR in text:
        return _parse_problem(text, overrides)
    cause = str(err.__cause__ or "")
    key, kind = _FULL_KEY.search(cause), _MERGE_INTO.search(cause)
    if "Cannot merge" in cause and key and kind:
        expected, given = ("a mapping", "a list") if kind[1] == "dict" else ("a list", "a mapping")
        return (
            f"{_written(key[1], overrides)}: {key[1]} takes {expected}, not {given} "
            "(a list is written [a,b], a mapping {a:1})"
        )
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "bad config override: " + "; ".join(lines)


def unknown_key_problem(key: str, overrides, config: dict) -> str:
    """Why the override of dotted ``key`` in ``overrides`` names no key of ``config`` (plain
    data), in the words :func:`override_problem` uses: the first missing part, its nearest
    siblings."""
    return _unknown_key(key, _written(key, overrides), config)


def _unknown_key(key: str, written: str, config: dict, deleting: bool = False) -> str:
    """The first part of dotted ``key`` that ``config`` lacks, and its nearest siblings."""
    parent, node, parts = "", config, key.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            break
        parent, node = f"{parent}.{part}".lstrip("."), node[part]
    name = parts[len(parent.split(".")) if parent else 0]
    known = list(node) if isinstance(node, dict) else []
    hint = did_you_mean(name, known, parent)
    if deleting:
        return f"{written}: {parent or 'the config'} has no {name!r} to delete{hint}"
    if parent in OPEN_MAPPINGS:
        close = hint if hint.startswith(";") else ""
        return f"{written}: {parent} has no {name!r} to change{close}; to add it, write +{written}"
    return f"{written}: {parent or 'the config'} has no key {name!r}{hint}"


def _unknown_inner_key(key: str, inner: str, written: str, composed_without) -> str:
    """``written`` sets ``key`` to a mapping holding ``inner``'s last part, which the mapping
    at ``key`` lacks; a search dimension or model parameter can be replaced instead."""
    name = inner.removeprefix(f"{key}.").split(".")[0]
    if key.startswith(tuple(f"{m}." for m in OPEN_MAPPINGS)):
        value = written.partition("=")[2]
        return (
            f"{written}: a mapping is merged into {key}, which has no key {name!r}; to replace "
            f"{key}, delete it first: ~{key} '+{key}={value}'"
        )
    node = composed_without(key) or {}
    for part in key.split("."):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    known = list(node) if isinstance(node, dict) else []
    hint = did_you_mean(name, known, key)
    if key in OPEN_MAPPINGS:
        close = hint if hint.startswith(";") else ""
        return f"{written}: {key} has no key {name!r}{close}; to add it, write +{key}.{name}=..."
    return f"{written}: {key} has no key {name!r}{hint}"


def _missing_option(path: str, text: str) -> str:
    group, _, option = path.rpartition("/")
    listed = text.split("Available options in", 1)[-1].split("Config search path", 1)[0]
    options = [line.strip() for line in listed.splitlines()[1:] if line.startswith("\t")]
    options = [option for option in options if option not in _NOT_CHOICES]
    close = did_you_mean(option, options).replace(" (top-level keys:", " (choose from:")
    return f"{group}={option}: there is no conf/{path}.yaml{close}"


def _parse_problem(text: str, overrides) -> str:
    found = _unparsable(overrides)
    if found is None:
        reason = [line for line in text.splitlines() if line.strip() and _PARSE_ERROR not in line]
        return f"cannot parse an override: {reason[0].strip() if reason else text}"
    override, reason = found
    key, equals, value = override.partition("=")
    if not equals:
        return (
            f"cannot parse the override {override!r}: overrides are key=value, e.g. train.epochs=5"
        )
    if value.lstrip().startswith(("[", "{")):
        return (
            f"cannot parse the override {override!r} ({reason}); a list is written [1,8,8], "
            "a mapping {cpu:1,gpu:0.5}"
        )
    return (
        f"cannot parse the override {override!r} ({reason}); quote a value that holds spaces, "
        "commas, brackets, quotes, '=', '#', '~' (a home folder) or non-ASCII letters: "
        f'"{key}={hydra_string(value)}"'
        " (the double quotes are for the shell)"
    )


def hydra_string(text: str) -> str:
    """``text`` as a quoted Hydra override value that parses back to exactly ``text``: inside
    single quotes a quote is escaped, and so are the backslashes before a quote or the end."""
    escaped = re.sub(r"(\\*)'", lambda m: m[1] * 2 + "\\'", text)
    escaped = re.sub(r"(\\+)$", lambda m: m[1] * 2, escaped)
    return f"'{escaped}'"


def shell_override(key: str, value: str) -> str:
    """``key=value`` as one shell word that Hydra parses back to exactly ``value``: a value
    of other than letters, digits and ``_./+:@%-`` (Hydra refuses a bare ``~``, a home
    folder's) is quoted for Hydra, then for the shell."""
    import shlex

    if re.fullmatch(r"[A-Za-z0-9_./+:@%-]+", value):
        return f"{key}={value}"
    word = f"{key}={hydra_string(value)}"
    return shlex.quote(word) if re.search(r'["$`\\!]', word) else f'"{word}"'


def _unparsable(overrides) -> tuple[str, str] | None:
    """The first override Hydra's parser refuses, and why."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_override(override)
        except HydraException as err:
            return override, str(err).strip().splitlines()[0]
    return None


def _written(key: str, overrides) -> str:
    """The override as the user wrote it, found by its key (or a key inside it)."""
    keys = [override_key(override) for override in overrides]
    for override, written in zip(overrides, keys, strict=True):
        if written == key:
            return override
    for override, written in zip(overrides, keys, strict=True):
        if written.startswith(f"{key}."):
            return override
    return key
