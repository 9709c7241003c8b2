"""The chat an LLM stage sends, and the text a voice reads: no model needed."""

import pytest

from deployments.llm.service import DEFAULT_SYSTEM_PROMPT, LLMParams, LLMService
from deployments.tts.speech_text import clean_for_speech

EMOTION = {"label": "sad", "summary": "The user seems sad (words negative; voice low energy)."}
NOTES = [{"source": "library.md", "text": "The library opens at nine."}]


def chat(inputs, **params):
    return LLMService.messages(None, inputs, LLMParams(**params))


def test_the_persons_words_stay_their_own_and_findings_go_to_the_system_message():
    messages = chat(
        {
            "transcript": "When does the library open?",
            "emotion": EMOTION,
            "context": NOTES,
            "image_text": "OPEN 24 HOURS",
        }
    )
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"] == "When does the library open?"
    system = messages[0]["content"]
    assert system.startswith(DEFAULT_SYSTEM_PROMPT)
    assert "seems sad" in system and "[library.md] The library opens at nine." in system
    assert "OPEN 24 HOURS" in system
    assert "user" not in system.lower(), "a small model repeats what it reads: no talk of 'the user'"


def test_a_context_template_says_it_the_clusters_way_and_history_is_chat_turns():
    history = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}]
    messages = chat(
        {"transcript": "And now?", "context": NOTES, "history": history},
        context_template="Answer from these notes:\n{context}",
        system_prompt="Be brief.",
    )
    assert messages[0]["content"] == "Be brief.\n\nAnswer from these notes:\n[library.md] The library opens at nine."
    assert messages[1:3] == history and messages[-1] == {"role": "user", "content": "And now?"}


def test_findings_before_the_words_leave_the_prompts_beginning_the_same_every_turn():
    history = [{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello!"}]
    sad, happy = (
        chat({"transcript": "And now?", "emotion": {"label": label}, "history": history}, findings="before_words")
        for label in ("sad", "happy")
    )
    assert sad[:3] == happy[:3] == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *history]
    assert sad[3]["role"] == "system" and "seems sad" in sad[3]["content"] and "seems happy" in happy[3]["content"]
    assert sad[4] == {"role": "user", "content": "And now?"}


@pytest.mark.parametrize("findings", ["in_system_prompt", "before_words"])
def test_without_findings_the_system_message_is_the_prompt_alone(findings):
    assert chat({"transcript": "Hello"}, findings=findings) == [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": "Hello"},
    ]
    # No notes retrieved: the template's header alone would only cost prompt tokens.
    template = "Answer from these notes:\n{context}"
    no_notes = chat({"transcript": "Hello", "context": []}, context_template=template, findings=findings)
    assert no_notes[0]["content"] == DEFAULT_SYSTEM_PROMPT and len(no_notes) == 2


def test_the_placeholders_are_checked_with_a_reason():
    errors = dict(LLMService.check_params({"prompt_template": "{transcript} {emotion}"}, {"transcript", "emotion"}))
    assert "context_template" in errors["prompt_template"]
    errors = dict(LLMService.check_params({"context_template": "{context}"}, {"transcript"}))
    assert errors["context_template"] == "placeholder {context} has no earlier stage that fills it"


@pytest.mark.parametrize(
    "written, spoken",
    [
        ("**Paris** is the capital of France. 🇫🇷", "Paris is the capital of France."),
        ("The capital of", "The capital of"),  # a reply's first words: no sentence of their own
        (
            "Here is how:\n- Boil water\n- Add the pasta\n1. Stir often",
            "Here is how: Boil water. Add the pasta. Stir often",
        ),
        ("## Tip\nUse `pip` to install it. 😀", "Tip. Use pip to install it."),
        ("See https://example.com/docs or [the guide](http://x.y) for more.", "See or the guide for more."),
        (
            "It is 20°C, 50% humid & sunny, e.g. nice.",
            "It is 20 degrees Celsius, 50 percent humid and sunny, for example nice.",
        ),
        ("👍", ""),
    ],
)
def test_speech_is_cleaned_of_what_a_listener_should_not_hear(written, spoken):
    assert clean_for_speech(written) == spoken
