"""The one redaction engine. Everything that stores or shows error text, logs or ticket fields goes through it
(the relay, routing, billing and support alike: it sits below every app).

Replaces provider key shapes, bearer tokens, API-key headers and query parameters, and any secrets the
caller names (a team's own upstream keys), with a mask that keeps only the last four characters.
"""
import logging
import re

_KEY_BODY = r"[A-Za-z0-9_\-]"
_PATTERNS = [
    # Provider key shapes (most specific first; the generic sk- rule catches the rest).
    re.compile(rf"\bsk-ant-(?:api|admin)\d\d-{_KEY_BODY}{{16,}}"),
    re.compile(rf"\bsk-or-v\d-{_KEY_BODY}{{16,}}"),
    re.compile(rf"\bsk-proj-{_KEY_BODY}{{16,}}"),
    re.compile(rf"\bsk-tg-{_KEY_BODY}{{16,}}"),
    re.compile(rf"\btgp_{_KEY_BODY}{{20,}}"),            # Tollgate personal access tokens
    re.compile(rf"\bsk-{_KEY_BODY}{{16,}}"),
    re.compile(r"\bAIza[0-9A-Za-z_\-]{30,}"),
    re.compile(r"\bxai-[A-Za-z0-9]{20,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
]
# Values that follow a secret-bearing name: headers, JSON fields, query strings, prose ("Bearer abc").
_NAMED = re.compile(
    r"""(?ix)
    (?P<name>bearer\s+
      |(?:x-api-key|x-goog-api-key|api[-_]?key|authorization|access[-_]?token|secret|password|key)
       (?:["']?\s*[:=]\s*["']?|=))
    (?!bearer\b)(?P<value>[^\s"'&,;}{\]]{6,})
    """
)


def _mask(secret: str) -> str:
    return f"[REDACTED…{secret[-4:]}]" if len(secret) >= 12 else "[REDACTED]"


def redact(text: str | None, extra_secrets=()) -> str:
    if not text:
        return text or ""
    for secret in extra_secrets:
        if secret and len(secret) >= 6:
            text = text.replace(secret, _mask(secret))
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: _mask(m.group(0)), text)

    def named(m):
        value = m.group("value")
        if value.startswith("[REDACTED"):
            return m.group(0)
        return m.group("name") + _mask(value)

    return _NAMED.sub(named, text)


class RedactingFilter(logging.Filter):
    """Logging filter: no log line carries a full key."""

    def filter(self, record):
        record.msg = redact(record.getMessage())
        record.args = ()
        return True
