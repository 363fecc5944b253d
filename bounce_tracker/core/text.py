"""Text that arrived by mail, made safe for staff to read.

Addresses, diagnostics and raw messages come from strangers. Unicode bidirectional
controls in them could reorder what staff read (an RTL override makes
"gro.elpmaxe@..." read as an unrelated address), in the admin and in the admin log
alike, so both show them as visible markers. Part of the shared core: no imports.
"""

from __future__ import annotations

import re

# LRM, RLM, ALM, embeddings, overrides, isolates.
_BIDI_CONTROLS_RE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_text(text: str) -> str:
    """``text`` with bidirectional controls replaced by visible ``[U+202E]`` markers."""
    return _BIDI_CONTROLS_RE.sub(lambda match: f"[U+{ord(match.group()):04X}]", text)


def shorten(text: str, limit: int | None) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    if limit is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"
