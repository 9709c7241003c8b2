"""Semantic end of turn against a fixed stop time, on real speech streamed through Silero VAD.

Each sentence is spoken (Piper, espeak-ng), framed in silence and fed in 20 ms pieces to `SpeechSegmenter`.
A fixed policy ends the turn at the segmenter's cut after `stop` ms of silence. The proposed one cuts after a
short stop, asks Smart Turn, and ends the turn there if the utterance sounds complete, else after the long stop.
Complete sentences give the latency (end of speech to end of turn); unfinished ones, whose speaker pauses for
`--pause` seconds before going on, give the false cut-offs.

    python -m bench.end_of_turn --piper-draws 3   # writes bench-results/bench-end-of-turn.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.speech import speak
from graphs.api.end_of_turn import EndOfTurnModel
from graphs.api.vad import RATE, SpeechSegmenter, Utterance, VADSettings
from omniwire.audio import decode

COMPLETE = [
    "What is the weather like in Paris today?",
    "Can you set a timer for ten minutes?",
    "Please play some relaxing music.",
    "How far is the moon from the earth?",
    "Tell me a joke about cats.",
    "What time is it in Tokyo?",
]
INCOMPLETE = [
    "I would like to know what the",
    "Can you tell me about the",
    "I was wondering if you could",
    "What is the best way to",
    "Remind me to call my",
    "So I think that we should",
]
VOICES = ("piper", "espeak-ng")
# (short stop ms, threshold, long stop ms); a threshold of None is today's fixed stop time.
POLICIES = [
    (500, None, 500),
    (1000, None, 1000),
    (200, 0.5, 1000),
    (200, 0.5, 1500),
    (300, 0.5, 1500),
    (200, 0.7, 1500),
    (200, 0.9, 1500),
]
PIECE = RATE // 50  # 20 ms, as a microphone sends
LEAD_S, TAIL_S = 0.5, 2.0


def spoken(text: str, voice: str) -> np.ndarray:
    """`text` at 16 kHz, trimmed to its voiced part so that its last sample is the end of speech."""
    if voice == "piper":
        audio = decode(speak(text)).samples
    elif shutil.which("espeak-ng") is None:
        raise RuntimeError("the espeak-ng binary is missing: apt-get install -y espeak-ng")
    else:
        with tempfile.TemporaryDirectory() as folder:
            wav = Path(folder, "speech.wav")
            subprocess.run(["espeak-ng", "-w", str(wav), text], check=True)
            audio = decode(wav.read_bytes()).samples
    voiced = np.flatnonzero(np.abs(audio) > 0.01 * np.abs(audio).max())
    return audio[voiced[0] : voiced[-1] + 1]


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


def trials(model: EndOfTurnModel, piper_draws: int) -> tuple[list[dict], list[float]]:
    """Each sentence in each voice: its cut times per stop, and the model's probability at each short stop.

    Piper samples its voice (no two syntheses alike), so it may say each sentence several times; espeak-ng once.
    """
    stops = sorted({p[0] for p in POLICIES} | {p[2] for p in POLICIES})
    shorts = {p[0] for p in POLICIES if p[1] is not None}
    rows, call_s = [], []
    for voice in VOICES:
        for text in (COMPLETE + INCOMPLETE) * (piper_draws if voice == "piper" else 1):
            speech = spoken(text, voice)
            row = {"voice": voice, "text": text, "complete": text in COMPLETE, "cut_s": {}, "probability": {}}
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
    parser.add_argument("--piper-draws", type=int, default=1, help="times Piper says each sentence")
    parser.add_argument("--out", type=Path, default=Path("bench-results/bench-end-of-turn.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    model = EndOfTurnModel()
    load_s = time.perf_counter() - started
    rows, call_s = trials(model, args.piper_draws)
    call = float(np.median(call_s))
    table = evaluate(rows, args.pause)
    for row in rows:
        print(
            f"{row['voice']:9} {'complete' if row['complete'] else 'unfinished':10} "
            f"p={row['probability'][200]:.3f}  {row['text']}"
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
