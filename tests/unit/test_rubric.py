"""The reply rubric: good spoken answers pass; the bad replies seen from today's system fail the right criterion."""

import pytest

from bench.eval_set import Question, load_questions
from bench.rubric import RubricScore, score_reply, summarise


def question(text, expect_any, topic_words=(), kind="fact"):
    return Question(id="q", kind=kind, text=text, expect_any=expect_any, topic_words=list(topic_words))


FRANCE = question("What is the capital of France?", ["paris"])
TIMES = question("What is 12 times 8?", ["96"])
EGG = question("How long should I boil an egg?", ["minute", "minutes"], ["water", "yolk"])
KM = question("How many kilometers are there in a mile?", ["1.6", "1.61"])
CM = question("How many centimeters are there in an inch?", ["2.54", "2.5"])
BOILING = question("At what temperature does water boil in Celsius?", ["100"])


@pytest.mark.parametrize(
    "q, reply",
    [
        (FRANCE, "The capital of France is Paris."),
        (FRANCE, "PARIS!"),
        (TIMES, "12 times 8 is 96."),
        (TIMES, "That's ninety-six."),
        (TIMES, "Twelve times eight equals ninety six."),
        (EGG, "About seven minutes for a hard-boiled egg, or six for a runny yolk."),
        (KM, "A mile is about 1.6 kilometers."),
        (KM, "There are roughly one point six kilometers in a mile."),
        (CM, "There are 2.54 centimeters in an inch."),
        (BOILING, "Water boils at a hundred degrees Celsius at sea level."),
        (BOILING, "It boils at 100°C."),
    ],
)
def test_good_short_answers_pass_every_criterion(q, reply):
    score = score_reply(q, reply)
    assert (score.answers, score.on_topic, score.no_meta, score.spoken_length) == (True, True, True, True)
    assert score.total == 1


def test_phrases_match_whole_words_and_whole_numbers():
    assert not score_reply(question("Which animal is the king of the jungle?", ["lion"]), "A million cats.").answers
    assert not score_reply(CM, "It is 2.56 centimeters.").answers
    assert not score_reply(TIMES, "The answer is 0.96, or 960.").answers
    assert not score_reply(TIMES, "Ninety five.").answers
    assert score_reply(question("How many weeks are in a year?", ["52"]), "Fifty-two weeks.").answers
    assert score_reply(question("How many meters are in a kilometer?", ["1000"]), "A thousand, or 1,000.").answers
    assert score_reply(question("What is 100 plus 25?", ["125"]), "One hundred and twenty-five.").answers


def test_format_instructions_leaking_into_the_reply_are_meta():
    score = score_reply(
        FRANCE,
        "Your response should be formatted as an appropriate sentence, answering the "
        "question about the capital of France.",
    )
    assert not score.no_meta and not score.answers and score.total < 1


def test_condolences_to_a_factual_question_are_off_topic():
    score = score_reply(TIMES, "I'm sorry for your loss.")
    assert not score.answers and not score.on_topic and score.no_meta
    assert score.total == 0.5


def test_narrating_the_user_is_meta():
    score = score_reply(EGG, "The user appears satisfied with the answer and has no further questions.")
    assert not score.no_meta and not score.answers


@pytest.mark.parametrize(
    "reply",
    [
        "As an AI language model, I cannot cook eggs.",
        "I'm just an AI, but eggs take minutes.",
        "Assistant: Boil the egg for seven minutes.",
        "The assistant should tell the user to boil the egg.",
        "<|im_start|>assistant Boil it for seven minutes.",
    ],
)
def test_talk_about_models_roles_and_prompts_is_meta(reply):
    assert not score_reply(EGG, reply).no_meta


@pytest.mark.parametrize(
    "reply",
    [
        "To boil an egg:\n- Boil water\n- Add the egg\n- Wait seven minutes",
        "1. Boil water. 2. Wait seven minutes.",
        "**Seven minutes** is best.",
        "See https://example.com/eggs for the minutes.",
        "Seven minutes! 🥚",
    ],
)
def test_markdown_lists_urls_and_emoji_are_not_speakable(reply):
    score = score_reply(EGG, reply)
    assert not score.spoken_length and score.answers


def test_an_off_topic_answer_fails_answers_and_topic():
    score = score_reply(EGG, "The Eiffel Tower was finished in 1889 for the World's Fair.")
    assert not score.answers and not score.on_topic and score.spoken_length


def test_sharing_the_question_s_words_is_on_topic_without_answering():
    score = score_reply(EGG, "Boiling eggs depends on how you like the yolk.")
    assert score.on_topic and not score.answers


def test_over_long_answers_and_empty_replies_fail_spoken_length():
    long = " ".join(["Boil the egg for about seven minutes, then cool it in cold water."] * 4)
    score = score_reply(EGG, long)
    assert score.answers and not score.spoken_length and score.words > 40 and score.sentences == 4
    many = score_reply(EGG, "Boil water. Add the egg. Wait seven minutes. Cool it.")
    assert many.sentences == 4 and not many.spoken_length
    empty = score_reply(EGG, "   ")
    assert empty.words == 0 and not empty.spoken_length and empty.total == 0.25


def test_every_question_in_the_set_accepts_a_plausible_answer():
    """Each question's own expect_any phrase, said in a sentence, scores full marks (no unmatched hint)."""
    for q in load_questions():
        if q.kind != "cannot":
            assert score_reply(q, f"I think it is {q.expect_any[0]}.").answers, q.id


WEATHER = Question(id="w", kind="cannot", text="What will the weather be like tomorrow?")
PIZZA = Question(id="p", kind="cannot", text="Can you order a pizza for me?")
LIBRARY = Question(id="l", kind="cannot", text="What time does the library open tomorrow?")


@pytest.mark.parametrize(
    "q, reply",
    [
        (WEATHER, "Sorry, I can't check the weather: I have no live information."),
        (WEATHER, "I don't have access to forecasts, so I can't tell you; a weather app will know."),
        (PIZZA, "Sorry, I can't order things for you; I can only talk."),
        (PIZZA, "I'm not able to place orders, but a delivery app can do it."),
        (LIBRARY, "I don't know the library's hours; its website will say."),
    ],
)
def test_an_honest_reply_to_a_request_it_cannot_honour_answers(q, reply):
    score = score_reply(q, reply)
    assert score.answers and score.total == 1.0


@pytest.mark.parametrize(
    "q, reply",
    [
        (WEATHER, "The weather is likely to be sunny with a mild breeze."),  # seen on main
        (WEATHER, "Tomorrow will be 18 degrees and cloudy, though I can't be sure."),
        (PIZZA, "Sure! I'd be happy to help you with that."),  # seen on main
        (PIZZA, "I've ordered a large pepperoni pizza for you."),
        (LIBRARY, "The library opens from 10 AM to 2 PM."),  # seen on main
        (Question(id="s", kind="cannot", text="What is the Tesla share price?"), "It sells for $10 per share."),
        (Question(id="a", kind="cannot", text="Set an alarm."), "Set alarm at 6:30 PM tomorrow morning."),
    ],
)
def test_playing_along_with_a_request_it_cannot_honour_fails(q, reply):
    assert not score_reply(q, reply).answers


def test_summarise_gives_rates_per_criterion_and_the_mean_total():
    scores = [
        score_reply(FRANCE, "Paris."),
        score_reply(FRANCE, "The user asked about France."),
        score_reply(FRANCE, "I'm sorry for your loss."),
    ]
    summary = summarise(scores)
    assert summary["replies"] == 3
    assert summary["answers"] == pytest.approx(1 / 3) and summary["no_meta"] == pytest.approx(2 / 3)
    assert summary["on_topic"] == pytest.approx(2 / 3) and summary["spoken_length"] == 1
    assert summary["total"] == pytest.approx(sum(s.total for s in scores) / 3)
    assert summarise([]) == {
        "replies": 0,
        "answers": None,
        "on_topic": None,
        "no_meta": None,
        "spoken_length": None,
        "total": None,
    }
    assert isinstance(scores[0], RubricScore)
