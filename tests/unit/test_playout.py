"""The server's estimate of what the client has played of a reply."""

from graphs.live.playout import Playout
from omniwire.frames import TTSAudioFrame

RATE = 16_000


def audio(seconds: float, sentence: int, text: str) -> TTSAudioFrame:
    return TTSAudioFrame(audio=b"\0\0" * int(RATE * seconds), sample_rate=RATE, sentence=sentence, text=text)


def test_audio_plays_from_when_it_is_sent_or_when_the_audio_before_ends():
    playout = Playout()
    playout.sent("turn", audio(1.0, 0, "Paris is"), now=10.0)
    playout.sent("turn", audio(1.0, 1, "the capital."), now=10.2)  # queued behind the first second
    assert playout.until == 12.0
    assert playout.playing(11.9) and not playout.playing(12.0)
    playout.sent("turn", audio(0.5, 2, "Yes."), now=20.0)  # sent after a gap: plays at once
    assert playout.until == 20.5


def test_a_cut_keeps_the_words_played_and_ends_the_playing():
    playout = Playout()
    playout.sent("turn", audio(1.0, 0, "Paris is the"), now=0.0)
    playout.sent("turn", audio(1.0, 1, "capital of France."), now=0.1)
    playout.sent("turn", audio(1.0, 1, "capital of France."), now=0.2)  # the sentence's second piece
    heard = playout.cut(1.5)
    assert heard is not None and heard.turn == "turn"
    # The first sentence whole; the second half played (0.5 of its 2 s): a quarter of its words, rounded.
    assert heard.text == "Paris is the capital"
    assert heard.seconds == 1.5
    assert not playout.playing(1.6) and playout.cut(1.6) is None


def test_a_cut_before_any_audio_plays_hears_nothing_and_after_the_end_cuts_nothing():
    playout = Playout()
    playout.sent("turn", audio(1.0, 0, "Hello there."), now=5.0)
    playout.sent("turn", audio(1.0, 1, "How are you?"), now=5.0)
    assert playout.cut(5.0).text == ""
    playout.sent("next", audio(1.0, 0, "Fine."), now=8.0)
    assert playout.cut(9.0) is None, "played out: nothing to cut"


def test_a_new_turns_audio_starts_a_new_reply():
    playout = Playout()
    playout.sent("first", audio(0.2, 0, "Old words."), now=0.0)
    playout.sent("second", audio(1.0, 0, "New words here."), now=0.1)
    heard = playout.cut(1.1)  # the second reply plays from 0.2 s, after the first
    assert heard.turn == "second" and heard.text == "New words here."
