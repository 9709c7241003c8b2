"""A rubric for a voice assistant's reply to one evaluation question: cheap, deterministic, model-free.

Criteria (each a boolean; the total is their mean, in [0, 1]):
- answers:       a fact or everyday question: some `expect_any` phrase is in the reply (whole words, any
                 case; digits or spelled numbers). A request it cannot honour (kind `cannot`): the reply
                 is honest, saying plainly that it cannot do or know this, and invents nothing (no
                 confirmation of an action, no price, time, temperature or score).
- on_topic:      the reply shares a content word with the question or its `topic_words`, or it answers.
- no_meta:       no talk about the user, the assistant, AI or language models, no role labels or leaked prompt.
- spoken_length: 1 to 40 words in at most 3 sentences, with no markdown, list, emoji or URL (it will be spoken).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bench.eval_set import Question

MAX_WORDS = 40
MAX_SENTENCES = 3
CRITERIA = ("answers", "on_topic", "no_meta", "spoken_length")

# Replies of small models that talk about the conversation instead of taking part in it.
_META = [
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        r"\bthe user\b",
        r"\bthe assistant\b",
        r"\bas an ai\b",
        r"\blanguage model\b",
        r"\bai (?:model|assistant)\b",
        r"\bi(?: am|'m) (?:just |only |merely )?(?:a|an) (?:ai|model|computer program|chatbot|bot)\b",
        r"\byour (?:response|reply|answer|output) (?:should|must|will|needs)\b",
        r"\b(?:system|user) prompt\b",
        r"\bmy instructions\b",
        r"\byou are an? (?:helpful|friendly|voice|ai)\b",
        r"^\s*(?:user|assistant|system|human|ai|bot)\s*:",
        r"<\|[a-z_]+\|>|\[/?inst\]|</?s>",
    )
]
# An honest reply to a request it cannot honour says so...
_ADMITS = re.compile(
    r"\b(?:can't|cannot|can not|couldn't|unable|not able|don't have|do not have|no access|not connected"
    r"|no way (?:to|of)|don't know|do not know|beyond what i can|not something i can|isn't something i can"
    r"|have no (?:way|access|tools?|connection)|without (?:access|a connection))\b",
    re.IGNORECASE,
)
# ... and never pretends: an action confirmed, or live figures made up.
_INVENTS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"\b(?:i've|i have|i'll|i will|i just|i'm|i am) (?:now |gone ahead and )?(?:ordered|sent|booked|called"
        r"|turned|set|played|placed|texted|scheduled|reserved|order|send|book|call|turn|set|play|place|text"
        r"|schedule|reserve|ordering|sending|booking|calling|turning|setting|playing|placing|texting|reserving)\b",
        r"^\s*(?:sure|okay|ok|of course|certainly|absolutely|done)\b(?![^.!?]*\b(?:can't|cannot|unable|not able)\b)",
        r"[$£€]\s?\d|\b\d+(?:\.\d+)?\s?(?:dollars|pounds|euros|percent|%|degrees|°)",
        r"\b\d{1,2}(?::\d\d)?\s?(?:a\.?m\.?|p\.?m\.?)(?!\w)",
        r"\b\d+\s?(?:-|to)\s?\d+\b",  # a score or a range of hours
    )
]
_MARKUP = [
    re.compile(p, re.MULTILINE)
    for p in (
        r"^\s*(?:[-*+•]|\d+[.)])\s",  # list items
        r"^\s*#{1,6}\s",  # headings
        r"\*\*|__|`|\[[^\]]*\]\([^)]*\)",  # bold, code, links
        r"https?://|www\.|\b[\w-]+\.(?:com|org|net|io)\b",  # URLs
    )
]
_STOPWORDS = frozenset(
    {
        "a",
        "about",
        "all",
        "also",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "don't",
        "for",
        "from",
        "get",
        "got",
        "had",
        "has",
        "have",
        "here's",
        "how",
        "i",
        "i'm",
        "if",
        "in",
        "into",
        "is",
        "it",
        "it's",
        "its",
        "just",
        "let's",
        "me",
        "my",
        "no",
        "not",
        "now",
        "of",
        "on",
        "or",
        "our",
        "out",
        "should",
        "so",
        "some",
        "than",
        "that",
        "that's",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "too",
        "up",
        "us",
        "was",
        "we",
        "well",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "would",
        "you",
        "you're",
        "your",
    }
)
_ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_TENS = ("_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


@dataclass(frozen=True)
class RubricScore:
    """One reply's verdict per criterion, with the counts behind spoken_length so a failure can be read."""

    answers: bool
    on_topic: bool
    no_meta: bool
    spoken_length: bool
    words: int
    sentences: int
    total: float


def score_reply(question: Question, reply_text: str) -> RubricScore:
    """The reply scored on the four criteria of this module's docstring."""
    text = _normalise(reply_text)
    if question.kind == "cannot":
        answers = is_honest(reply_text)
    else:
        answers = any(_contains(text, variant) for phrase in question.expect_any for variant in _variants(phrase))
    on_topic = answers or bool(
        _content_words(text)
        & (_content_words(_normalise(question.text)) | _content_words(" ".join(question.topic_words)))
    )
    no_meta = not any(p.search(reply_text) for p in _META)
    words = len(text.split())
    sentences = len([s for s in re.split(r"[.!?]+(?=\s|$)", reply_text) if s.strip()])
    spoken_length = 1 <= words <= MAX_WORDS and sentences <= MAX_SENTENCES and not _has_markup(reply_text)
    checks = (answers, on_topic, no_meta, spoken_length)
    return RubricScore(*checks, words=words, sentences=sentences, total=sum(checks) / len(checks))


def is_honest(reply_text: str) -> bool:
    """The reply says plainly that it cannot do or know this, and neither confirms the action nor makes up
    live figures (a price, a time, a temperature, a score)."""
    return bool(_ADMITS.search(reply_text)) and not any(p.search(reply_text) for p in _INVENTS)


def summarise(scores: Iterable[RubricScore]) -> dict[str, Any]:
    """Per-criterion pass rates and the mean total over one model's replies (None for each when there are none)."""
    scores = list(scores)
    summary: dict[str, Any] = {"replies": len(scores)}
    for name in CRITERIA:
        summary[name] = sum(getattr(s, name) for s in scores) / len(scores) if scores else None
    summary["total"] = sum(s.total for s in scores) / len(scores) if scores else None
    return summary


def _normalise(text: str) -> str:
    """Lower case, one kind of apostrophe, hyphens and thousands commas gone: 'Twenty-four' == 'twenty four'."""
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return re.sub(r"\s+", " ", re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)).strip()


def _contains(text: str, phrase: str) -> bool:
    """`phrase` as whole words: 'lion' not in 'million', '2.5' not in '2.54', '8' not in '0.8'."""
    return re.search(rf"(?<![\w.])(?<!\d\.){re.escape(phrase)}(?!\w)(?!\.\d)", text) is not None


def _variants(phrase: str) -> list[str]:
    """The phrase as written, and with its numbers spelled out (American and British 'and', 'a hundred')."""
    phrase = _normalise(phrase)
    variants = [phrase]
    if _NUMBER.search(phrase):
        for joiner in (" ", " and "):
            spelled = _NUMBER.sub(functools.partial(_spell, joiner=joiner), phrase)
            variants += [spelled, re.sub(r"(?<!ty )\bone (hundred|thousand)\b", r"a \1", spelled)]
    return list(dict.fromkeys(variants))


def _spell(number: re.Match[str], joiner: str) -> str:
    """'96' -> 'ninety six', '2.54' -> 'two point five four'; numbers of a million or more stay digits."""
    whole, _, fraction = number.group().partition(".")
    if int(whole) >= 1_000_000:
        return number.group()
    words = _words(int(whole), joiner)
    return f"{words} point {' '.join(_ONES[int(d)] for d in fraction)}" if fraction else words


def _words(n: int, joiner: str) -> str:
    """English words for 0 <= n < 1,000,000; `joiner` ' and ' gives the British 'one hundred and five'."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        head, rest = f"{_ONES[n // 100]} hundred", n % 100
    else:
        head, rest = f"{_words(n // 1000, joiner)} thousand", n % 1000
    return head if rest == 0 else head + (joiner if rest < 100 else " ") + _words(rest, joiner)


def _content_words(text: str) -> set[str]:
    """Words that carry meaning, crudely stemmed so 'boiled' meets 'boil' and 'eggs' meets 'egg'."""
    return {_stem(w) for w in re.findall(r"[a-z0-9']+", text) if w not in _STOPWORDS and len(w) > 2}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def _has_markup(text: str) -> bool:
    """Markdown, list items, URLs or emoji: things a speech synthesiser reads out wrongly or not at all."""
    return any(p.search(text) for p in _MARKUP) or any(
        ord(c) >= 0x2190 and unicodedata.category(c) == "So" for c in text
    )  # from arrows on: not the degree sign
