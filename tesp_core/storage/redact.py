"""Removing secrets from URLs and free text before they reach a log, an error or a view."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit, urlunsplit

REDACTED = "***"

# Query parameters that carry credentials in presigned or token URLs.
_SECRET_QUERY_KEYS = re.compile(
    r"(?i)^(x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|"
    r"access_token|private_token|password|passwd|secret|key|api_key|apikey|awsaccesskeyid)$"
)
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """Return ``url`` with its userinfo password and secret query values replaced."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if user else f"{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = []
        for pair in query.split("&"):
            key, sep, _value = pair.partition("=")
            pairs.append(f"{key}={REDACTED}" if sep and _SECRET_QUERY_KEYS.match(key) else pair)
        query = "&".join(pairs)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL that appears in free text (exception messages, log lines)."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
