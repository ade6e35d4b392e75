"""The redaction layer: scrubs secrets from formatted log text.

Log calls never pass secrets on purpose; this is the net under that rule. Every line is
formatted first and scrubbed last, tracebacks included, so a token that reaches an exception
message or a library's log line still never reaches the output. It replaces the configured
secrets it is given, secret-named parameters and headers, and anything shaped like a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SENSITIVE_PARAMS = (
    r"code|state|handoff|handoff_code|code_verifier|access_token|refresh_token|id_token|"
    r"session_token|client_secret|password|token"
)
_NAMED = re.compile(
    # Authorization header values
    r"(?P<scheme>\b(?:[Bb]earer|[Bb]asic))\s+[A-Za-z0-9._~+/=-]+"
    # query/form parameters and JSON members that carry secrets
    rf"|(?P<kv>\b(?:{_SENSITIVE_PARAMS})=)[^&\s\"';,]+"
    rf"|(?P<json>\"(?:{_SENSITIVE_PARAMS})\"\s*:\s*)\"[^\"]*\""
    # cookie and set-cookie header values (not the JSON value "cookie": `"via": "cookie", …`)
    r"|(?<!\": \")(?P<cookie>\b(?:[Ss]et-)?[Cc]ookie\b['\"]?\s*[:=,]\s*)[^\n]+"
)
# The names above, lower-cased: a line without any of them skips `_NAMED` (most lines do).
_NAME_HINTS = ("bearer", "basic", "cookie", *_SENSITIVE_PARAMS.split("|"))
# Anything shaped like a random token: 24+ base64url characters, not all lower-case.
_BLOB = re.compile(r"[A-Za-z0-9_-]{24,}")
_SETTING = re.compile(r"BFF_[A-Z0-9_]+")


class Redactor:
    """Scrubs secrets from formatted log text: known literals and anything shaped like one."""

    def __init__(self, literals: Iterable[str] = ()) -> None:
        self._literals = sorted({s for s in literals if len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for literal in self._literals:
            if literal in text:
                text = text.replace(literal, "[secret]")
        lower = text.lower()
        if any(hint in lower for hint in _NAME_HINTS):
            text = _NAMED.sub(_replace_named, text)
        return _BLOB.sub(_replace_blob, text)


def _replace_named(match: re.Match[str]) -> str:
    for group in ("scheme", "kv", "json", "cookie"):
        prefix = match.group(group)
        if prefix is not None:
            quote = '"[redacted]"' if group == "json" else "[redacted]"
            return f"{prefix}{' ' if group == 'scheme' else ''}{quote}"
    return match.group(0)


def _replace_blob(match: re.Match[str]) -> str:
    blob = match.group(0)
    if _UUID.match(blob) or not any(c.isdigit() or c.isupper() for c in blob):
        return blob  # a request id or a snake_case identifier
    if _SETTING.fullmatch(blob):
        return blob  # a setting's name, in a hint that says what to change
    return "[redacted]"
