"""Sentence by sentence: cut streamed reply text where speech can start."""

from __future__ import annotations

import re

# A sentence ends at . ! ? (possibly closed by a quote or bracket) followed by white space.
_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)")
_TERMINAL = re.compile(r"[.!?]+[\"')\]]*$")


class SentenceAggregator:
    """Collects text pieces and hands out whole sentences as soon as they end.

    Very short "sentences" (an abbreviation, "1.") wait to be joined with the next one, since a
    voice reading them alone sounds choppy.
    """

    def __init__(self, min_chars: int = 12) -> None:
        self.min_chars = min_chars
        self._buffer = ""
        self.emitted = 0

    def push(self, piece: str) -> list[str]:
        self._buffer += piece
        sentences = []
        start = 0
        for match in _END.finditer(self._buffer):
            candidate = self._buffer[start:match.end()].strip()
            if len(candidate) >= self.min_chars:
                sentences.append(candidate)
                start = match.end()
        self._buffer = self._buffer[start:]
        self.emitted += len(sentences)
        return sentences

    def flush(self) -> str | None:
        """What is left once the text is complete, or None.

        A trailing fragment without an end mark was cut by the token limit: dropped when a whole
        sentence came before it (half a sentence sounds broken), kept when it is all there is.
        """
        rest, self._buffer = self._buffer.strip(), ""
        if not rest or (self.emitted and not _TERMINAL.search(rest)):
            return None
        self.emitted += 1
        return rest
