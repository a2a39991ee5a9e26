"""Credentials out of what is saved, logged or shown: passwords in URLs and secret query values.

``postgresql://user:pass@host/db`` becomes ``postgresql://user:***@host/db``,
``https://TOKEN@host`` becomes ``https://***@host`` and ``...?token=abc&x=1`` becomes
``...?token=***&x=1``. Redaction is for copies (config.yaml, MLflow params, reports, messages):
the run itself keeps the real values.
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ or scheme://token@. The password runs to the last "@" of the URL:
# unencoded AWS secrets hold "/" and passwords may hold "@", and masking too much is harmless.
_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)"
    r"(?:(?P<user>[^/\s?#:@]*):(?P<password>[^\s?#]*)|(?P<token>[^/\s?#:@]+))@"
)
# a query or fragment parameter whose name says it holds a secret (token, api_key, X-Amz-Signature,
# sig of an Azure SAS, ...)
_SECRET_PARAM = re.compile(
    r"(?P<name>[?&;#][^=&#\s]*?(?:token|key|secret|passw|pwd|sig|credential|auth)[^=&#\s]*=)"
    r"(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)


def redact_text(text: str) -> str:
    """``text`` with the credentials of every URL in it masked."""
    text = _USERINFO.sub(_mask_userinfo, text)
    return _SECRET_PARAM.sub(lambda m: m["name"] + MASK, text)


def redact(values):
    """A copy of nested dicts/lists/tuples with every string passed through :func:`redact_text`."""
    if isinstance(values, str):
        return redact_text(values)
    if isinstance(values, dict):
        return {key: redact(value) for key, value in values.items()}
    if isinstance(values, list | tuple):
        return type(values)(redact(value) for value in values)
    return values


def _mask_userinfo(match: re.Match) -> str:
    if match["token"] is not None:
        return f"{match['scheme']}{MASK}@"
    return f"{match['scheme']}{match['user']}:{MASK}@"
