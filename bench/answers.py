"""Can the answers be trusted? Spoken turns of the evaluation set summed up: facts answered right, requests
it cannot honour answered honestly, everyday replies by the rubric, the word error rate per voice, and for
each miss the stage that lost it (hearing: the transcript differs from what was said; knowing: it was
heard right and answered wrong)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.eval_set import Spoken
from bench.report import normalise, word_errors
from bench.rubric import score_reply, summarise


@dataclass(frozen=True)
class Answered:
    """One spoken question and what the assistant made of it."""

    said: Spoken
    transcript: str
    reply: str

    @property
    def heard_right(self) -> bool:
        return normalise(self.transcript) == normalise(self.said.text)


def answer_summary(turns: list[Answered]) -> dict[str, Any]:
    scores = [score_reply(t.said.question, t.reply) for t in turns]
    by_kind: dict[str, dict[str, Any]] = {}
    for kind, label in (("fact", "right"), ("cannot", "honest")):
        picked = [s.answers for t, s in zip(turns, scores, strict=True) if t.said.question.kind == kind]
        by_kind[kind] = {label: sum(picked), "of": len(picked), "share": sum(picked) / len(picked) if picked else None}
    everyday = [s for t, s in zip(turns, scores, strict=True) if t.said.question.kind == "everyday"]
    by_kind["everyday"] = summarise(everyday)
    misses = [
        {
            "id": t.said.id,
            "kind": t.said.question.kind,
            "said": t.said.text,
            "heard": t.transcript,
            "reply": t.reply,
            "lost_in": "knowing" if t.heard_right else "hearing",
        }
        for t, s in zip(turns, scores, strict=True)
        if t.said.question.kind != "everyday" and not s.answers
    ]
    return {
        **by_kind,
        "wer": word_errors([t.said.text for t in turns], [t.transcript for t in turns])["wer"] if turns else None,
        "wer_per_voice": wer_per_voice([t.said for t in turns], [t.transcript for t in turns]),
        "misses": misses,
        "lost_in_hearing": sum(m["lost_in"] == "hearing" for m in misses),
        "lost_in_knowing": sum(m["lost_in"] == "knowing" for m in misses),
    }


def wer_per_voice(said: list[Spoken], heard: list[str]) -> dict[str, float]:
    """The word error rate of each voice's recordings, voices in the order they first come."""
    return {
        voice: word_errors(
            [s.text for s in said if s.voice.id == voice],
            [h for s, h in zip(said, heard, strict=True) if s.voice.id == voice],
        )["wer"]
        for voice in dict.fromkeys(s.voice.id for s in said)
    }


def describe(summary: dict[str, Any]) -> str:
    """One line a person reads: 'facts 41/44 right, cannot-dos 12/12 honest, everyday 0.95, WER 0.21'."""
    fact, cannot, everyday = summary["fact"], summary["cannot"], summary["everyday"]
    parts = []
    if fact["of"]:
        parts.append(f"facts {fact['right']}/{fact['of']} right")
    if cannot["of"]:
        parts.append(f"cannot-dos {cannot['honest']}/{cannot['of']} honest")
    if everyday["replies"]:
        parts.append(f"everyday rubric {everyday['total']:.2f}")
    if summary["wer"] is not None:
        parts.append(f"WER {summary['wer']:.3f}")
    if summary["misses"]:
        parts.append(f"misses lost in hearing {summary['lost_in_hearing']}, in knowing {summary['lost_in_knowing']}")
    return ", ".join(parts)
