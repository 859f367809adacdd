"""Hangul, one place: the Unicode ranges of Korean script, as ranges, as a regex character class and as tests.
Builders read it to clean term pairs and romanise; training reads it for each vocabulary piece's script and for
trimming a tokenizer to Korean + English."""
from __future__ import annotations

import re

SYLLABLES = (0xAC00, 0xD7A3)  # 가..힣: the precomposed syllables (the romaniser's arithmetic starts at 0xAC00)
HANGUL_RANGES = (
    SYLLABLES,
    (0x1100, 0x11FF),  # Hangul Jamo
    (0x3130, 0x318F),  # Hangul Compatibility Jamo
    (0xA960, 0xA97F),  # Hangul Jamo Extended-A
    (0xD7B0, 0xD7FF),  # Hangul Jamo Extended-B
)
HANGUL_CLASS = "".join(f"\\u{lo:04x}-\\u{hi:04x}" for lo, hi in HANGUL_RANGES)  # for a regex [...]
SYLLABLE_RE = re.compile(f"[\\u{SYLLABLES[0]:04x}-\\u{SYLLABLES[1]:04x}]")


def is_hangul(ch: str) -> bool:
    """Any Hangul character: syllable or jamo."""
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in HANGUL_RANGES)


def is_syllable(ch: str) -> bool:
    return SYLLABLES[0] <= ord(ch) <= SYLLABLES[1]
