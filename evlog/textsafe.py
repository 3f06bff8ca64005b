"""Text from a log made safe to show on a terminal.

A log may come from someone else, so every name and value in it (a type, a
stream, a group, a string in a payload or a fold's state) is untrusted. A
terminal acts on some characters instead of showing them: ESC starts control
sequences (colours, cursor moves, an OSC 52 write to the clipboard), C0 and
C1 controls move the cursor or ring the bell, line and paragraph separators
end a line, and bidirectional controls reorder what follows them, so that
``pay\\u202emoc.evil`` reads as another name. :func:`visible` turns each of
these into a visible escape (``\\u001b``, ``\\n``), so a value always shows
as what it is, on one line.

The rule is by Unicode category, not by a list of known tricks: every
control (Cc), format character (Cf), line separator (Zl) and paragraph
separator (Zp) is escaped. Format characters draw nothing, so besides the
bidirectional controls they include the zero-width space, the word joiner,
the soft hyphen, the byte order mark and the tag characters, each of which
can hide text inside a name that looks like another (``pay\\u200bpal``) or
smuggle unseen text after it. Two of them are kept where they do their
work: the zero-width joiner and non-joiner shape Persian, Arabic and Indic
script and join emoji (a family, a flag), always between two characters
outside ASCII; next to an ASCII character, or at either end, they only hide
something, and are escaped.

Only human-readable output goes through here (tables, templates, listings,
messages, progress); NDJSON, JSON and msgpack keep the exact values, escaped
by their own encodings (:func:`json_for_terminal` adds the characters JSON
leaves raw when JSON is shown on a terminal).
"""

from __future__ import annotations

import functools
import re

_FORMAT_CHARACTERS = (
    # Unicode 15.1's format characters (category Cf), by range. The zero-width
    # joiners (200C, 200D) are handled by _HIDING_JOINER below.
    (0x00AD, 0x00AD), (0x0600, 0x0605), (0x061C, 0x061C), (0x06DD, 0x06DD), (0x070F, 0x070F),
    (0x0890, 0x0891), (0x08E2, 0x08E2), (0x180E, 0x180E), (0x200B, 0x200B), (0x200E, 0x200F),
    (0x202A, 0x202E), (0x2060, 0x2064), (0x2066, 0x206F), (0xFEFF, 0xFEFF), (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD), (0x110CD, 0x110CD), (0x13430, 0x1343F), (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A), (0xE0001, 0xE0001), (0xE0020, 0xE007F),
)


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _unsafe_characters() -> dict[int, str]:
    """Every character a terminal would act on rather than show, mapped to a visible escape."""
    codes = [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]  # controls, line and paragraph separators
    for first, last in _FORMAT_CHARACTERS:
        codes += range(first, last + 1)
    table = {code: _escape(code) for code in codes}
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    return table


UNSAFE = _unsafe_characters()
"""``str.translate`` table: code point -> its visible escape (all but the two joiners)."""

_HIDING_JOINER = (
    # A joiner with an ASCII character, the text's start or end, or another joiner on either side.
    r"(?:(?<=[\x00-\x7f\u200c\u200d])|^)[\u200c\u200d]|[\u200c\u200d](?=[\x00-\x7f\u200c\u200d]|$)"
)


@functools.cache
def _hiding_joiner() -> re.Pattern[str]:
    return re.compile(_HIDING_JOINER)  # compiled on first use: most text has no joiner


def _escape_joiner(match: re.Match[str]) -> str:
    return _escape(ord(match.group()))


def visible(text: str) -> str:
    """``text`` with every control, C1, format, bidi and line-separator character shown as an escape.

    The zero-width joiner and non-joiner stay only between two characters outside ASCII.
    """
    if "\u200c" in text or "\u200d" in text:
        text = _hiding_joiner().sub(_escape_joiner, text)
    return text.translate(UNSAFE)


def visible_lines(text: str) -> list[str]:
    """Each line of a message made :func:`visible`, the message's own line breaks kept.

    Only ``\\n`` breaks a line here: a carriage return or a line separator
    inside a name from the log is escaped like any other control.
    """
    return [visible(line) for line in text.split("\n")]


@functools.cache
def _json_unsafe_pattern() -> re.Pattern[str]:
    """What JSON leaves raw but :data:`UNSAFE` escapes (JSON itself escapes C0), and hiding joiners.

    Compiled when JSON is first written to a terminal, not on import: every command imports this module.
    """
    codes = sorted(code for code in UNSAFE if code >= 0x7F)
    ranges: list[tuple[int, int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1] = (ranges[-1][0], code)
        else:
            ranges.append((code, code))
    members = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{members}]|{_HIDING_JOINER}")


def json_for_terminal(encoded: bytes) -> bytes:
    """JSON text with the characters JSON leaves raw (C1, format, bidi, separators) as ``\\uXXXX``.

    JSON escapes only C0 controls, but a terminal acts on the others too.
    Outside strings JSON is ASCII, so every such character is inside a
    string, where ``\\uXXXX`` decodes to the same value: the output means
    exactly what it did. Characters above U+FFFF become surrogate pairs, as
    JSON spells them.
    """
    if encoded.isascii():
        return encoded
    return json_text_for_terminal(encoded.decode()).encode()


def json_text_for_terminal(text: str) -> str:
    """:func:`json_for_terminal` of decoded JSON text."""
    pattern = _json_unsafe_pattern()
    if pattern.search(text) is None:
        return text
    return pattern.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
