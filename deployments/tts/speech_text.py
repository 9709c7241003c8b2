"""Text as a voice should read it: what a reader sees but a listener should not hear is removed
(markdown, list bullets, emojis, web addresses) and the symbols a voice would spell are words."""

from __future__ import annotations

import re

_CODE = re.compile(r"`{1,3}([^`]*)`{1,3}")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")  # [text](url) -> text
_URL = re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE)
_EMPHASIS = re.compile(r"(\*{1,3}|_{2,3})(?=\S)(.+?)(?<=\S)\1")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s*", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+•]|\d{1,2}[.)])\s+", re.MULTILINE)
_EMOJI = re.compile(
    "[\U0001f000-\U0001faff\U00002600-\U000027bf\U0001f1e6-\U0001f1ff\u200d\ufe0f\u2b50\u2b55\u2705\u274c]+"
)
_STRAY = re.compile(r"[*_#|<>~^\\]+")
_WORDS = [
    (re.compile(r"(\d)\s*%"), r"\1 percent"),
    (re.compile(r"(\d)\s*°\s*C\b"), r"\1 degrees Celsius"),
    (re.compile(r"(\d)\s*°\s*F\b"), r"\1 degrees Fahrenheit"),
    (re.compile(r"(\d)\s*°"), r"\1 degrees"),
    (re.compile(r"\s&\s"), " and "),
    (re.compile(r"\be\.g\.", re.IGNORECASE), "for example"),
    (re.compile(r"\bi\.e\.", re.IGNORECASE), "that is"),
    (re.compile(r"\betc\.", re.IGNORECASE), "and so on."),
]


def clean_for_speech(text: str) -> str:
    """One line of speakable text; list items become sentences."""
    text = _CODE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _EMPHASIS.sub(r"\2", text)
    text = _HEADING.sub("", text)
    text = _EMOJI.sub("", text)
    lines = [line for line in (_BULLET.sub("", line).strip() for line in text.splitlines()) if line]
    # Each line a sentence; the last keeps its own ending: a reply's first words, cut before their
    # sentence ends, must not be read as a sentence of their own.
    ended = [line if line[-1:] in ".!?:;," else line + "." for line in lines[:-1]]
    text = " ".join(ended + lines[-1:])
    for pattern, words in _WORDS:
        text = pattern.sub(words, text)
    text = _STRAY.sub(" ", text)
    text = re.sub(r"\(\s*\)", "", text)
    text = re.sub(r"\s+([,.!?;:])", r"\1", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text if any(ch.isalnum() for ch in text) else ""
