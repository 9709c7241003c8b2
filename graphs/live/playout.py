"""What the client has played of the reply audio sent to it: the server's estimate of what was heard.

A reply is made faster than it is spoken, so when the user speaks over it the server has sent more
than they heard. Audio plays from when it was sent, or when the audio before it ends, whichever is
later; a sentence cut in its middle is heard in proportion to its played time, word by word. The
words heard, not the words made, are what the conversation's history should say was answered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omniwire.frames import TTSAudioFrame


@dataclass
class _Played:
    sentence: int
    text: str
    start: float
    end: float


@dataclass
class Heard:
    turn: Any  # whose reply: what the caller passed with its audio
    text: str
    seconds: float  # of the reply's audio, up to the moment it was cut


@dataclass
class Playout:
    until: float = 0.0  # when the client will have played everything sent so far
    _turn: Any = None
    _played: list[_Played] = field(default_factory=list)

    def sent(self, turn: Any, frame: TTSAudioFrame, now: float) -> None:
        """A piece of `turn`'s reply audio handed to the client at `now`."""
        if turn is not self._turn:
            self._turn, self._played = turn, []
        start = max(self.until, now)
        self.until = start + frame.seconds
        self._played.append(_Played(frame.sentence, frame.text, start, self.until))

    def playing(self, now: float) -> bool:
        return now < self.until

    def cut(self, now: float) -> Heard | None:
        """The reply still playing is stopped at `now`: what of it was heard (None if nothing plays)."""
        if not self.playing(now) or not self._played:
            return None
        heard, seconds = [], 0.0
        for sentence in dict.fromkeys(p.sentence for p in self._played):
            pieces = [p for p in self._played if p.sentence == sentence]
            length = sum(p.end - p.start for p in pieces)
            played = sum(min(max(now - p.start, 0.0), p.end - p.start) for p in pieces)
            seconds += played
            words = pieces[0].text.split()
            if length > 0:
                heard += words[: round(len(words) * played / length)]
        turn = self._turn
        self.until, self._turn, self._played = 0.0, None, []
        return Heard(turn, " ".join(heard), round(seconds, 3))
