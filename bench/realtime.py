"""Time to first audio on the live WebSocket, stage by stage, against the floor of the same models
called directly in one process; with the word error rate and the rubric score of the replies.

    python -m bench.realtime                                  # deploys serve_config.yaml on a local Ray
    python -m bench.realtime --url http://127.0.0.1:8000 --cluster CLUSTER_Q_ETE_CONVERSATION --limit 10

Each question of the evaluation set (bench/questions.yaml, several voices) is spoken into the
WebSocket at real-time pace, like a microphone, followed by silence. The client's figure runs
from the true end of the speech in the recording (its trailing silence trimmed) to the first reply
audio received; the server's from the end of speech its VAD found to the first audio handed to the
connection. Per turn: when the turn started and was committed after the end of speech (the pause
and the end-of-turn model), speech-to-text, the LLM's time to first token, its first chunk, the
TTS's first audio; for replies spoken in several chunks, the first audio over the whole reply.
The floor runs the same models in this process, one after another: Silero VAD over the recording
at its own pace to find the pause (from the true end of speech to the pause it ends with, which
includes the VAD's own delay in hearing silence), then the speech-to-text, the LLM's first chunk
and its speech: project / floor says what orchestration costs; then the rest of the reply and its
speech, for the first audio over the whole reply these replies allow.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.answers import Answered, answer_summary, describe
from bench.eval_set import KINDS, spoken_questions
from bench.live import TimedSession
from bench.report import machine, save_json, word_errors
from bench.rubric import score_reply, summarise
from bench.speech import speech_end
from client.api import OmniServeClient
from client.audio import CHUNK_S
from graphs.app import parse_args
from graphs.launch import read_config, serve_locally
from graphs.live.vad import Pause, SpeechSegmenter, VADSettings
from graphs.observability.latency import spread
from omniwire.audio import decode
from omniwire.frames import (
    EndFrame,
    ErrorFrame,
    LLMTextFrame,
    MetricsFrame,
    StartInterruptionFrame,
    TranscriptionFrame,
    TTSAudioFrame,
)

DEFAULT_CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
RATE = 16_000


def live_turn(client: OmniServeClient, cluster: str, samples: np.ndarray, silence_s: float = 2.0) -> dict[str, Any]:
    """One question over the WebSocket at real-time pace; the frames back, and the client's clock."""
    with client.live(cluster=cluster) as live:
        session = TimedSession(live)
        ended = session.speak(samples, silence_s)
        session.expect(EndFrame, where=lambda f: f.turn)
    frames = session.received
    heard = " ".join(f.text for _, f in frames if isinstance(f, TranscriptionFrame))
    # A turn committed at a pause and then spoken over (the user went on) is not the one measured.
    starts = [i for i, (_, f) in enumerate(frames) if isinstance(f, StartInterruptionFrame)]
    frames = frames[starts[-1] + 1 :] if starts else frames
    first_audio = next((t for t, f in frames if isinstance(f, TTSAudioFrame)), None)
    end = next((f for _, f in frames if isinstance(f, EndFrame) and f.turn), None)
    if first_audio is None or end is None:  # nothing heard, or the turn failed: a miss, with what was said
        error = next((f for _, f in frames if isinstance(f, ErrorFrame)), end)
        return {
            "status": getattr(error, "status", None) or "no reply",
            "error": getattr(error, "error", None),
            "client_first_audio_s": None,
            "server": None,
            "transcript": heard,
            "reply": "",
        }
    metrics = next(f.metrics for _, f in frames if isinstance(f, MetricsFrame) and f.stage is None)
    return {
        "track_id": end.track_id,
        "turn": end.turn,
        "status": end.status,
        "client_first_audio_s": first_audio - ended,
        "server": metrics,
        "transcript": heard,
        "reply": "".join(f.text for _, f in frames if isinstance(f, LLMTextFrame)).strip(),
    }


def stage_breakdown(tasks: list[dict[str, Any]]) -> dict[str, float]:
    """The turn's critical path from its records: speech-to-text (the first stage), the LLM's first
    token, its first chunk (the LLM's start to the TTS's), the TTS's first audio (the piped stage)."""
    profiles = [t["latency_profile"] for t in tasks]
    position = next(i for i, p in enumerate(profiles) if "wait_upstream" in p)
    stt, llm, tts = profiles[0], profiles[position - 1], profiles[position]
    return {
        "stt_s": stt["ts_end"] - stt["ts_start"],
        "llm_first_token_s": llm["ttfb_s"],
        "first_chunk_s": tts["ts_start"] - llm["ts_start"],
        "tts_first_audio_s": tts["ttfb_s"],
    }


def spoken_chunks(tasks: list[dict[str, Any]]) -> int:
    """How many pieces the reply was spoken in (the piped TTS stage's record)."""
    tts = next(t for t in tasks if "wait_upstream" in t["latency_profile"])
    return tts["result_profile"].get("sentences", 1)


def first_audio_over_total(server: dict[str, float]) -> float:
    """End of speech to the first reply audio, over end of speech to the reply's end (the graph's
    `total_reply_s` runs from the turn's start). A reply made before the end of the turn was decided
    is all held until then, so it ends no sooner than its first audio."""
    made = server["turn_started_after_s"] + server["total_reply_s"]
    return server["time_to_first_audio_s"] / max(made, server["time_to_first_audio_s"])


def pause_after_speech_s(samples: np.ndarray, silence_s: float = 2.0) -> float:
    """From the true end of speech to the pause the VAD ends it with, the recording fed as the
    WebSocket sends it, in audio time: what the VAD needs to hear silence, and the pause."""
    audio = np.concatenate([samples, np.zeros(int(RATE * silence_s), np.float32)])
    segmenter, step, fired = SpeechSegmenter(VADSettings()), int(RATE * CHUNK_S), None
    for start in range(0, len(audio), step):
        if any(isinstance(e, Pause) for e in segmenter.feed(audio[start : start + step], (start + step) / RATE)):
            fired = (start + step) / RATE  # the last pause: speech resumed after any earlier one
    if fired is None:
        raise ValueError("the VAD found no pause after the speech")
    return fired - speech_end(samples)


class Floor:
    """The cluster's models in this process, called one after another: what the hardware allows."""

    def __init__(self, cluster: str, serve_config: str | Path = "serve_config.yaml") -> None:
        from deployments.component import components
        from deployments.kinds import KINDS

        config = parse_args(read_config(serve_config)["applications"][0]["args"]).clusters()
        registry = components()
        self.stages = {}
        for stage in config.clusters[cluster].flat():
            spec = config.models[stage.model]
            component = registry[spec.component]
            self.stages[component.kind] = (component(**spec.options), component.Params.model_validate(stage.params))
        self.chunker = KINDS["text_to_speech"].incremental.chunker

    def first_audio(self, samples: np.ndarray) -> dict[str, float]:
        stt, stt_params = self.stages["speech_to_text"]
        llm, llm_params = self.stages["llm"]
        tts, tts_params = self.stages["text_to_speech"]
        pause_s = pause_after_speech_s(samples)
        t0 = time.perf_counter()
        heard, _ = stt.process({"audio": samples}, stt_params)
        t1 = time.perf_counter()
        inputs = {"transcript": heard["transcript"]}
        if "emotion" in self.stages:
            emotion, emotion_params = self.stages["emotion"]
            inputs.update(emotion.process({**inputs, "audio": samples}, emotion_params)[0])
        t_emotion = time.perf_counter()

        def speak(text: str) -> tuple[float, float]:
            start = time.perf_counter()
            tts.process({"reply_text": text}, tts_params)
            return start, time.perf_counter()

        chunker, first_token, chunks, first = self.chunker(), None, [], None
        for piece in llm.stream(llm.messages(inputs, llm_params), llm_params, threading.Event()):
            if isinstance(piece, dict):
                continue
            first_token = first_token or time.perf_counter()
            chunks += chunker.push(piece)
            if chunks and first is None:
                first = speak(chunks[0])
        if rest := chunker.flush():
            chunks.append(rest)
        t2, t3 = first or speak(chunks[0] if chunks else "")
        for later in chunks[1:]:
            speak(later)
        t4 = time.perf_counter()
        return {
            "pause_s": pause_s,
            "stt_s": t1 - t0,
            "llm_first_token_s": (first_token or t2) - t_emotion,
            "first_chunk_s": t2 - t1,
            "tts_first_audio_s": t3 - t2,
            "first_audio_s": pause_s + t3 - t0,
            "chunks": len(chunks),
            # One after another, the rest of the reply is made and then spoken: the longest whole reply
            # these models take, so the lowest first audio / whole reply they allow.
            "first_audio_over_total": (pause_s + t3 - t0) / (pause_s + t4 - t0),
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime", description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server; without it, --config is deployed on a local Ray")
    parser.add_argument(
        "--config", default="serve_config.yaml", help="deployed without --url; the floor runs its models either way"
    )
    parser.add_argument("--cluster", default=DEFAULT_CLUSTER)
    parser.add_argument("--limit", type=int, help="only the first N recordings")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="question kinds (default: all)")
    parser.add_argument("--voices", nargs="+", metavar="VOICE", help="voice ids (default: every voice)")
    parser.add_argument(
        "--voices-per-question",
        type=int,
        default=1,
        metavar="N",
        help="each question said by N voices, taken in turn (default: %(default)s; 0: every voice)",
    )
    parser.add_argument("--no-floor", action="store_true", help="skip the in-process floor")
    parser.add_argument("--out", type=Path, default=Path("bench-results/realtime.json"))
    args = parser.parse_args(argv)
    console = Console()

    questions = spoken_questions(
        voices=args.voices, kinds=args.kinds, voices_per_question=args.voices_per_question or None
    )[: args.limit]
    url = args.url or serve_locally(args.config)
    turns = []
    with OmniServeClient(url, timeout=60) as client:
        live_turn(client, args.cluster, decode(questions[0][1]).samples)  # warm every replica once
        for question, wav in questions:
            samples = decode(wav).samples
            turn = live_turn(client, args.cluster, samples)
            turn.update(
                question=question.question.id,
                kind=question.question.kind,
                voice=question.voice.id,
                text=question.text,
                rubric=score_reply(question.question, turn["reply"]).__dict__,
            )
            if turn["server"] is not None:
                track = client.track(turn["track_id"])["tasks"]
                tasks = [t for t in track if t["turn"] == turn["turn"]]
                turn.update(stages=stage_breakdown(tasks), chunks=spoken_chunks(tasks))
            turns.append(turn)
            took = f"{turn['client_first_audio_s']:.2f} s" if turn["server"] else f"none ({turn['status']})"
            console.print(
                f"{question.id:>34}  first audio {took}  [dim]{turn['transcript']!r} -> {turn['reply'][:70]!r}[/dim]"
            )
    floors = []
    if not args.no_floor:
        floor = Floor(args.cluster, args.config)
        floor.first_audio(decode(questions[0][1]).samples)
        for _question, wav in questions:
            floors.append(floor.first_audio(decode(wav).samples))

    answered = [t for t in turns if t["server"] is not None]
    client = [t["client_first_audio_s"] for t in answered]
    summary: dict[str, Any] = {
        "turns": len(turns),
        "unanswered": len(turns) - len(answered),
        "client_first_audio_s": spread(client),
        "server_first_audio_s": spread([t["server"]["time_to_first_audio_s"] for t in answered]),
        "turn_started_after_s": spread([t["server"]["turn_started_after_s"] for t in answered]),
        "turn_committed_after_s": spread([t["server"]["turn_committed_after_s"] for t in answered]),
        # What streaming buys: for a reply spoken in one chunk the first audio is all of it.
        "first_audio_over_total": spread(
            [first_audio_over_total(t["server"]) for t in answered if t["chunks"] > 1] or [float("nan")]
        ),
        **{k: spread([t["stages"][k] for t in answered]) for k in answered[0]["stages"]},
        "wer": word_errors([t["text"] for t in turns], [t["transcript"] for t in turns])["wer"],
        "rubric": summarise(score_reply(q.question, t["reply"]) for (q, _), t in zip(questions, turns, strict=True)),
        "answers": answer_summary(
            [Answered(q, t["transcript"], t["reply"]) for (q, _), t in zip(questions, turns, strict=True)]
        ),
    }
    if floors:
        floor_total = [f["first_audio_s"] for f in floors]
        summary["floor_first_audio_s"] = spread(floor_total)
        per_reply = ("chunks", "first_audio_over_total")
        summary["floor_stages"] = {k: spread([f[k] for f in floors]) for k in floors[0] if k not in per_reply}
        # As for the project: replies spoken in several chunks.
        summary["floor_stages"]["first_audio_over_total"] = spread(
            [f["first_audio_over_total"] for f in floors if f["chunks"] > 1] or [float("nan")]
        )
        summary["project_over_floor"] = float(np.median(client) / np.median(floor_total))

    table = Table(title=f"{args.cluster}: {len(turns)} live turns, seconds (min / median / p95 / max)")
    table.add_column("measure")
    table.add_column("project", justify="right")
    table.add_column("floor (one process)", justify="right")
    for key in (
        "client_first_audio_s",
        "server_first_audio_s",
        "turn_started_after_s",
        "turn_committed_after_s",
        "pause_s",
        "stt_s",
        "llm_first_token_s",
        "first_chunk_s",
        "tts_first_audio_s",
        "first_audio_over_total",
    ):
        if key == "client_first_audio_s":
            floor_value = summary.get("floor_first_audio_s")
        else:
            floor_value = summary.get("floor_stages", {}).get(key)
        table.add_row(key, _fmt(summary.get(key)), _fmt(floor_value))
    console.print(table)
    if "project_over_floor" in summary:
        console.print(f"project / floor (medians, first audio): {summary['project_over_floor']:.2f}")
    console.print(f"WER {summary['wer']:.1%}; rubric {summary['rubric']}")
    console.print(describe(summary["answers"]))
    console.print("WER per voice: " + ", ".join(f"{v} {w:.2f}" for v, w in summary["answers"]["wer_per_voice"].items()))
    for miss in summary["answers"]["misses"]:
        console.print(f"[red]miss[/red] ({miss['lost_in']}) {miss['id']}: {miss['heard']!r} -> {miss['reply']!r}")

    save_json(
        args.out,
        {
            "cluster": args.cluster,
            "url": url,
            "machine": machine(),
            "summary": summary,
            "turns": turns,
            "floor": floors,
        },
    )
    console.print(f"written to {args.out}")


def _fmt(values: dict[str, float] | None) -> str:
    return " / ".join(f"{v:.3f}" for v in values.values()) if values else ""


if __name__ == "__main__":
    main()
