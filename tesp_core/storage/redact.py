"""Removing secrets from URLs and free text before they reach a log, an error or a view."""

from __future__ import annotations

REDACTED = "***"

# Query parameters that carry credentials in presigned or token URLs. The patterns are
# strings, compiled (and cached by re) on first use, and re itself is imported then: the
# worker imports this module for every task, and importing re and compiling them cost it
# ~10M instructions it mostly does not need.
_CREDENTIAL_QUERY_KEYS = (
    r"(?i)^(x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|"
    r"access_token|private_token|password|passwd|secret|key|api_key|apikey|awsaccesskeyid)$"
)
_URL_IN_TEXT = r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+"
# A credential in a query string without its scheme and host, as HTTP libraries log the
# request line ("POST /jobs?job_id=1&private_token=... HTTP/1.1").
_QUERY_CREDENTIAL_IN_TEXT = (
    r"(?i)([?&](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|"
    r"access_token|private_token|password|passwd|secret|key|api_key|apikey|awsaccesskeyid)=)"
    r"[^&\s'\"<>]+"
)


def redact_url(url: str) -> str:
    """Return ``url`` with its userinfo password and secret query values replaced."""
    # Imported here: the worker loads this module for every task, and needs urllib.parse
    # only when it has a URL to show.
    from urllib.parse import SplitResult, urlsplit, urlunsplit

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
        import re

        pairs = []
        for pair in query.split("&"):
            key, sep, _value = pair.partition("=")
            pairs.append(
                f"{key}={REDACTED}" if sep and re.match(_CREDENTIAL_QUERY_KEYS, key) else pair
            )
        query = "&".join(pairs)
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Redact every URL that appears in free text (exception messages, log lines), and
    credential query parameters of URLs written without their scheme (request lines)."""
    import re

    text = re.sub(_URL_IN_TEXT, lambda m: redact_url(m.group(0)), text)
    return re.sub(_QUERY_CREDENTIAL_IN_TEXT, rf"\1{REDACTED}", text)
