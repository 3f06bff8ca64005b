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

Only human-readable output goes through here (tables, templates, listings,
messages, progress); NDJSON, JSON and msgpack keep the exact values, escaped
by their own encodings.
"""

from __future__ import annotations


def _unsafe_characters() -> dict[int, str]:
    """Every character a terminal would act on rather than show, mapped to a visible escape."""
    table = {code: f"\\u{code:04x}" for code in (*range(0x20), *range(0x7F, 0xA0))}
    table.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
    # Line and paragraph separators end a line in some terminals; the
    # bidirectional marks, embeddings, overrides and isolates reorder what
    # follows them on the line.
    for code in (0x061C, 0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        table[code] = f"\\u{code:04x}"
    return table


UNSAFE = _unsafe_characters()
"""``str.translate`` table: code point -> its visible escape."""


def visible(text: str) -> str:
    """``text`` with every control, C1, bidi and line-separator character shown as an escape."""
    return text.translate(UNSAFE)
