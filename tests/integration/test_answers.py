"""Answers that can be trusted, with a floor: a slice of the evaluation set, spoken in hard voices (accents, a
telephone line, noise), through the default cluster as a user's recordings go. A worse ear, model or prompt
falls below the floor and fails the build; python -m bench.realtime measures the whole set live."""

from bench.answers import Answered, answer_summary, describe
from bench.eval_set import spoken_questions
from tests.integration.test_conversation import post

CLUSTER = "CLUSTER_Q_NO_EMOTION_ETE_CONVERSATION"
HARD_VOICES = ["scotland", "caribbean", "rp-female", "phone-us", "lancaster", "us-fast-noisy"]
FACTS = [
    "largest-planet",
    "spider-legs",
    "weeks-in-year",
    "minutes-in-hours",
    "red-planet",
    "capital-japan",
    "tallest-mountain",
    "moon-walk",
    "relativity",
    "hexagon-sides",
    "capital-italy",
    "largest-mammal",
]
CANNOT = ["weather-tomorrow", "share-price", "order-pizza", "library-hours", "lights-on", "book-table"]
# Live, these questions in two voices each (README, "Answers you can trust"): facts 18 of 24 right now,
# 9 of 24 with last round's set-up; cannot-dos 12 of 12 honest now, 0 before. The floor leaves room for
# two slips.
MIN_FACTS_RIGHT = 7
MIN_CANNOT_HONEST = 5


def test_spoken_facts_are_answered_right_and_cannot_dos_honestly(server):
    spoken = spoken_questions(voices=HARD_VOICES, questions=FACTS + CANNOT, voices_per_question=1)
    turns = []
    for said, wav in spoken:
        response = post(server, wav, cluster=CLUSTER)
        assert response.status_code in (200, 422), response.text  # 422: nothing heard, a miss like any other
        body = response.json()
        turns.append(Answered(said, body.get("transcript") or "", body.get("reply_text") or ""))
    summary = answer_summary(turns)
    misses = "; ".join(f"{m['id']} heard {m['heard']!r} -> {m['reply']!r}" for m in summary["misses"])
    assert summary["fact"]["right"] >= MIN_FACTS_RIGHT, f"{describe(summary)}: {misses}"
    assert summary["cannot"]["honest"] >= MIN_CANNOT_HONEST, f"{describe(summary)}: {misses}"
