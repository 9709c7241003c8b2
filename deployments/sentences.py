"""Where a sentence ends: one rule for cutting streamed replies, trimming cut-off replies and
chunking documents; and where the first words of a reply can be spoken before its sentence ends."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nltk.tokenize.punkt import PunktSentenceTokenizer

# NLTK's Punkt decides where sentences end: after . ! ? (possibly repeated, possibly closed by a quote
# or bracket) unless the period belongs to a number ("3.5") or an abbreviation, or an ellipsis runs on
# in lower case. It is used untrained (no data to download), with the abbreviations a spoken reply
# uses mid-sentence; "no" and "etc" are left out, as replies end sentences with them.
ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "prof", "st", "jr", "sr", "vs", "e.g", "i.e", "a.m", "p.m"})

_MARK = r"[.!?]+[\"')\]]*"
_ENDS_TEXT = re.compile(_MARK + r"\s*$")
_CLAUSE_BEFORE_SPACE = re.compile(r"[,;:—]+(?=\s)")


@cache
def segmenter() -> PunktSentenceTokenizer:
    """Punkt, loaded on first use: importing nltk takes about 3 s of CPU (it imports scipy.stats), which
    processes that never cut sentences should not pay; those that do call this as they start."""
    from nltk.tokenize.punkt import PunktParameters, PunktSentenceTokenizer

    parameters = PunktParameters()
    parameters.abbrev_types = set(ABBREVIATIONS)
    return PunktSentenceTokenizer(parameters)


def _ends(text: str) -> list[int]:
    """Where Punkt ends each sentence of the text (the last one at the text's end, mark or not)."""
    ends: list[int] = []
    for start, end in segmenter().span_tokenize(text):
        if ends and start == ends[-1]:  # at the text's end Punkt cuts "it!!" as "it!" + "!"; no white space, no end
            ends[-1] = end
        else:
            ends.append(end)
    return ends


def _inner_ends(text: str) -> list[int]:
    """The sentence ends a following sentence has confirmed: while text streams in, the end of the
    text may not be an end, since Punkt needs the next word to tell ("Dr." + " Smith")."""
    return _ends(text)[:-1]


def split_sentences(text: str) -> list[str]:
    """Whole sentences of a complete text; a trailing fragment without an end mark is kept."""
    ends = _ends(text)
    return [sentence for start, end in zip([0, *ends], ends, strict=False) if (sentence := text[start:end].strip())]


def ends_sentence(text: str) -> bool:
    """Whether the text's last words close a sentence."""
    return _ENDS_TEXT.search(text) is not None


def trim_to_sentence(text: str) -> str:
    """Drop a trailing half sentence left by the token limit; it sounds broken when spoken."""
    ends = _marked_ends(text)
    return text[: ends[-1]] if ends else text


def _marked_ends(text: str) -> list[int]:
    """The sentence ends that have an end mark (the text's last sentence may have none)."""
    return [end for end in _ends(text) if ends_sentence(text[:end])]


class SentenceAggregator:
    """Collects text pieces and hands out whole sentences as soon as they end.

    Very short "sentences" (an abbreviation, "1.") wait to be joined with the next one, since a
    voice reading them alone sounds choppy. With `first_words`, the reply's first chunk goes out
    sooner: at the first clause (a comma, colon, semicolon or dash) after `first_clause_words`
    words, or after `first_words` words in any case, so speech starts before the first sentence
    is written; later chunks are whole sentences.
    """

    def __init__(self, min_chars: int = 12, first_words: int | None = None, first_clause_words: int = 3) -> None:
        self.min_chars = min_chars
        self.first_words = first_words
        self.first_clause_words = first_clause_words
        self._buffer = ""
        self.emitted = 0

    def push(self, piece: str) -> list[str]:
        self._buffer += piece
        sentences = []
        if self.emitted == 0 and self.first_words and (first := self._first_chunk()):
            sentences.append(first)
        start = 0
        for end in _inner_ends(self._buffer):
            candidate = self._buffer[start:end].strip()
            if len(candidate) >= self.min_chars:
                sentences.append(candidate)
                start = end
        self._buffer = self._buffer[start:]
        self.emitted += len(sentences)
        return sentences

    def _first_chunk(self) -> str | None:
        """The reply's opening words, once there are enough: the earliest sentence end or clause after
        `first_clause_words` words (or a sentence of `min_chars`), else the first `first_words` words."""
        ends = _inner_ends(self._buffer)
        marks = sorted([*ends, *(m.end() for m in _CLAUSE_BEFORE_SPACE.finditer(self._buffer))])
        cut = next(
            (
                end
                for end in marks
                if len(self._buffer[:end].split()) >= self.first_clause_words
                or (end in ends and len(self._buffer[:end].strip()) >= self.min_chars)
            ),
            None,
        )
        words = list(re.finditer(r"\S+(?=\s)", self._buffer))
        if cut is None and len(words) >= self.first_words:
            cut = words[self.first_words - 1].end()
        if cut is None:
            return None
        first, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
        return first

    def flush(self) -> str | None:
        """What is left once the text is complete, or None.

        A trailing fragment without an end mark was cut by the token limit: dropped when a whole
        sentence came before it (half a sentence sounds broken), kept when it is all there is.
        """
        rest, self._buffer = self._buffer.strip(), ""
        if not rest or (self.emitted and not _marked_ends(rest)):
            return None
        self.emitted += 1
        return rest
