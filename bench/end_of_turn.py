"""Semantic end of turn against a fixed stop time, on real speech streamed through Silero VAD.

Each question of the evaluation set (bench/questions.yaml) is spoken in its own voice, whole and broken off
after half its words, framed in silence and fed in 20 ms pieces to `SpeechSegmenter`.
A fixed policy ends the turn at the segmenter's cut after `stop` ms of silence. The proposed one cuts after a
short stop, asks Smart Turn, and ends the turn there if the utterance sounds complete, else after the long stop.
Whole questions give the latency (end of speech to end of turn); unfinished ones, whose speaker pauses for
`--pause` seconds before going on, give the false cut-offs.

    python -m bench.end_of_turn   # writes bench-results/bench-end-of-turn.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.eval_set import Spoken, load_eval_set, recordings, synthesize
from graphs.live.end_of_turn import EndOfTurnModel
from graphs.live.vad import RATE, SpeechSegmenter, Utterance, VADSettings
from omniwire.audio import decode

# (short stop ms, threshold, long stop ms); a threshold of None is a fixed stop time. The first
# proposed one is the server's default (VADSettings: pause_ms, end_of_turn_threshold, min_silence_ms).
_DEFAULT = VADSettings()
POLICIES = [
    (500, None, 500),
    (1000, None, 1000),
    (_DEFAULT.pause_ms, _DEFAULT.end_of_turn_threshold, _DEFAULT.min_silence_ms),
    (200, 0.5, 1000),
    (200, 0.5, 1500),
    (300, 0.5, 1500),
    (200, 0.7, 1500),
    (200, 0.9, 1500),
]
PIECE = RATE // 50  # 20 ms, as a microphone sends
LEAD_S, TAIL_S = 0.5, 2.0


def fragment(said: Spoken) -> Spoken:
    """The question broken off after half its words, in the same voice: a speaker who pauses mid-sentence."""
    words = said.text.split()
    text = " ".join(words[: max(2, len(words) // 2)])
    return Spoken(said.question.model_copy(update={"id": f"{said.question.id}-fragment", "text": text}), said.voice)


def voiced(wav: bytes) -> np.ndarray:
    """The WAV at 16 kHz, trimmed to its voiced part so that its last sample is the end of speech."""
    audio = decode(wav, RATE).samples
    loud = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[loud[0] : loud[-1] + 1]


def cut(speech: np.ndarray, stop_ms: int) -> tuple[float, np.ndarray]:
    """Seconds from the end of speech to the segmenter's cut with this stop time, and the audio the model hears then.

    That audio runs up to the cut, silence included, as pipecat hands it to Smart Turn (the stream's leading
    silence is zeros, like the model's own padding).
    """
    stream = np.concatenate([np.zeros(int(LEAD_S * RATE)), speech, np.zeros(int(TAIL_S * RATE))]).astype(np.float32)
    segmenter = SpeechSegmenter(VADSettings(min_silence_ms=stop_ms))
    for i in range(0, len(stream), PIECE):
        now = (i + PIECE) / RATE
        for event in segmenter.feed(stream[i : i + PIECE], arrived=now):
            if isinstance(event, Utterance):
                return now - LEAD_S - len(speech) / RATE, stream[: i + PIECE]
    raise RuntimeError(f"no cut within {TAIL_S} s of silence")


def trials(model: EndOfTurnModel) -> tuple[list[dict], list[float]]:
    """Each question of the evaluation set, whole and broken off, in one of its voices (taken in turn): its
    cut times per stop, and the model's probability at each short stop."""
    stops = sorted({p[0] for p in POLICIES} | {p[2] for p in POLICIES})
    shorts = {p[0] for p in POLICIES if p[1] is not None}
    rows, call_s = [], []
    for question in recordings(load_eval_set(), voices_per_question=1):
        for said, complete in ((question, True), (fragment(question), False)):
            speech = voiced(synthesize(said))
            row = {"voice": said.voice.id, "text": said.text, "complete": complete, "cut_s": {}, "probability": {}}
            for stop in stops:
                row["cut_s"][stop], audio = cut(speech, stop)
                if stop in shorts:
                    started = time.perf_counter()
                    row["probability"][stop] = model.probability(audio)
                    call_s.append(time.perf_counter() - started)
            rows.append(row)
    return rows, call_s


def evaluate(rows: list[dict], pause_s: float) -> list[dict]:
    """Per policy: complete sentences ended at the short stop, their latency, and unfinished ones cut off."""
    table = []
    for short, threshold, long in POLICIES:
        latencies, early, model_cuts, pause_cuts = [], 0, 0, 0
        for row in rows:
            said_complete = threshold is not None and row["probability"][short] >= threshold
            if row["complete"]:
                early += said_complete
                latencies.append(row["cut_s"][short] if said_complete else row["cut_s"][long])
            else:
                model_cuts += said_complete
                pause_cuts += not said_complete and row["cut_s"][long] <= pause_s
        n_complete = sum(r["complete"] for r in rows)
        table.append(
            {
                "policy": f"fixed {long} ms" if threshold is None else f"{short} ms, p>={threshold}, {long} ms",
                "complete_ended_early": early,
                "complete": n_complete,
                "latency_mean_ms": round(1000 * float(np.mean(latencies))),
                "latency_max_ms": round(1000 * max(latencies)),
                "false_cutoffs": model_cuts + pause_cuts,
                "incomplete": len(rows) - n_complete,
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pause", type=float, default=1.0, help="seconds an unfinished speaker pauses")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-end-of-turn.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    model = EndOfTurnModel()
    load_s = time.perf_counter() - started
    rows, call_s = trials(model)
    call = float(np.median(call_s))
    table = evaluate(rows, args.pause)
    for row in rows:
        print(
            f"{row['voice']:20} {'complete' if row['complete'] else 'unfinished':10} "
            f"p={row['probability'][_DEFAULT.pause_ms]:.3f}  {row['text']}"
        )
    print(
        f"\nload {load_s:.2f} s; a call {1000 * call:.0f} ms median, {1000 * max(call_s):.0f} ms max; "
        f"an unfinished speaker pauses {args.pause:g} s\n"
    )
    print(
        f"{'policy':26} {'complete ended early':>20} {'latency mean/max ms':>22} {'false cut-offs':>15}"
        "\n(latency: end of speech to the cut; a turn ended early waits one model call more)"
    )
    for t in table:
        print(
            f"{t['policy']:26} {t['complete_ended_early']:>14}/{t['complete']:<5} "
            f"{t['latency_mean_ms']:>13}/{t['latency_max_ms']:<8} {t['false_cutoffs']:>9}/{t['incomplete']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"load_s": load_s, "call_ms_median": 1000 * call, "pause_s": args.pause, "policies": table, "trials": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
