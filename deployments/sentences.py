"""Where a sentence ends: one rule for cutting streamed replies, trimming cut-off replies and
chunking documents; and where the first words of a reply can be spoken before its sentence ends."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (possibly repeated, possibly closed by a quote or bracket) followed by
# white space or the end of the text.
_MARK = r"[.!?]+[\"')\]]*"
_END = re.compile(_MARK + r"(?=\s|$)")
_END_BEFORE_SPACE = re.compile(_MARK + r"(?=\s)")  # while text streams in, the end of the text may not be an end
_ENDS_TEXT = re.compile(_MARK + r"\s*$")
_CLAUSE_BEFORE_SPACE = re.compile(r"[,;:—]+(?=\s)")


def split_sentences(text: str) -> list[str]:
    """Whole sentences of a complete text; a trailing fragment without an end mark is kept."""
    sentences, start = [], 0
    for match in _END.finditer(text):
        if sentence := text[start : match.end()].strip():
            sentences.append(sentence)
        start = match.end()
    if rest := text[start:].strip():
        sentences.append(rest)
    return sentences


def ends_sentence(text: str) -> bool:
    """Whether the text's last words close a sentence."""
    return _ENDS_TEXT.search(text) is not None


def trim_to_sentence(text: str) -> str:
    """Drop a trailing half sentence left by the token limit; it sounds broken when spoken."""
    ends = list(_END.finditer(text))
    return text[: ends[-1].end()] if ends else text


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
        for match in _END_BEFORE_SPACE.finditer(self._buffer):
            candidate = self._buffer[start : match.end()].strip()
            if len(candidate) >= self.min_chars:
                sentences.append(candidate)
                start = match.end()
        self._buffer = self._buffer[start:]
        self.emitted += len(sentences)
        return sentences

    def _first_chunk(self) -> str | None:
        """The reply's opening words, once there are enough: the earliest sentence end or clause after
        `first_clause_words` words (or a sentence of `min_chars`), else the first `first_words` words."""
        marks = sorted(
            [*_END_BEFORE_SPACE.finditer(self._buffer), *_CLAUSE_BEFORE_SPACE.finditer(self._buffer)],
            key=lambda m: m.end(),
        )
        cut = next(
            (
                m.end()
                for m in marks
                if len(self._buffer[: m.end()].split()) >= self.first_clause_words
                or (_END.fullmatch(m.group()) and len(self._buffer[: m.end()].strip()) >= self.min_chars)
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
        if not rest or (self.emitted and not _END.search(rest)):
            return None
        self.emitted += 1
        return rest
