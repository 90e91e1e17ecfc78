"""Terminal-safe text: a control character from a task or a server is shown, never obeyed.

A task's name, tags, logs and a server's messages are anybody's bytes. Written raw to a
terminal, ``ESC [ 2 J`` clears the screen, ``ESC ] 52`` may write the clipboard and BEL
rings; so every human rendering passes them through :func:`one_line` (names, ids, URLs,
messages) or :func:`block` (stdout/stderr, which keep their newlines and tabs). Each
such character becomes a visible ``\\xNN`` / ``\\uNNNN`` escape. ``--json`` output needs
none of this: JSON escapes them itself.
"""

from __future__ import annotations

import re

# C0 (including ESC, BEL, CR), DEL and C1 (0x9b is a one-byte CSI), the bidirectional
# overrides that make text read differently from what it is, and lone surrogates (which
# would not even encode).
_OTHER = "\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_ONE_LINE = re.compile(f"[\x00-\x1f{_OTHER}]")
# 0x09 (tab) and 0x0a (newline) stay.
_BLOCK = re.compile(f"[\x00-\x08\x0b-\x1f{_OTHER}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def one_line(value: object) -> str:
    """``value`` as text with every control character (newlines too) escaped."""
    return _ONE_LINE.sub(_escape, str(value))


def block(value: object) -> str:
    """Multi-line text (a log): newlines and tabs kept, every other control escaped."""
    return _BLOCK.sub(_escape, str(value).replace("\r\n", "\n"))
