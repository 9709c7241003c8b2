from deployments.sentences import SentenceAggregator, split_sentences, trim_to_sentence


def feed(text: str, size: int = 3) -> tuple[list[str], str | None]:
    agg = SentenceAggregator()
    out = []
    for i in range(0, len(text), size):
        out += agg.push(text[i : i + size])
    return out, agg.flush()


def test_sentences_come_out_as_soon_as_they_end():
    agg = SentenceAggregator()
    assert agg.push("The capital of France") == []
    assert agg.push(" is Paris. It is") == ["The capital of France is Paris."]
    assert agg.push(" lovely in spring! And") == ["It is lovely in spring!"]


def test_streamed_in_small_pieces_the_text_is_kept_whole():
    text = "Hello there, how are you today? I am fine, thank you. What about you?"
    sentences, rest = feed(text)
    assert sentences + [rest] == ["Hello there, how are you today?", "I am fine, thank you.", "What about you?"]


def test_short_fragments_wait_for_the_next_sentence():
    sentences, rest = feed("Dr. Smith said hello to everyone here. Bye now.")
    assert sentences == ["Dr. Smith said hello to everyone here."]
    assert rest == "Bye now."


def test_a_fragment_cut_by_the_token_limit_is_dropped_after_a_sentence():
    assert feed("The ocean is vast and deep. It covers most of the")[1] is None
    assert feed("The ocean is vast and deep and it covers")[1] == "The ocean is vast and deep and it covers"


def test_one_rule_for_complete_texts():
    text = 'She said "stop!" Then left. Really?! Yes... fine'
    assert split_sentences(text) == ['She said "stop!"', "Then left.", "Really?!", "Yes... fine"]
    assert trim_to_sentence("It is sunny. The forecast for tomor") == "It is sunny."
    assert trim_to_sentence('He said "hello."') == 'He said "hello."'
    assert trim_to_sentence("no end mark at all") == "no end mark at all"


def test_the_first_words_are_spoken_before_the_first_sentence_ends():
    agg = SentenceAggregator(first_words=6)
    assert agg.push("The capital of France is") == [], "five whole words: wait"
    assert agg.push(" Paris and it is") == ["The capital of France is Paris"], "six words, no sentence yet"
    assert agg.push(" lovely in spring. It has") == ["and it is lovely in spring."], "then whole sentences"
    clause = SentenceAggregator(first_words=6)
    assert clause.push("Yes, of course, here it") == ["Yes, of course,"], "or the first clause of three words"
    short = SentenceAggregator(first_words=6)
    assert short.push("It is Paris. And") == ["It is Paris."], "a short sentence is a first chunk too"


def test_abbreviations_and_decimals_do_not_end_a_sentence():
    text = "Dr. Smith arrived at 3.5 p.m. today. Mr. Jones came later, e.g. at six."
    assert split_sentences(text) == ["Dr. Smith arrived at 3.5 p.m. today.", "Mr. Jones came later, e.g. at six."]
    assert feed(text) == (["Dr. Smith arrived at 3.5 p.m. today."], "Mr. Jones came later, e.g. at six.")
    assert trim_to_sentence("It costs 3.5 euros. Mrs. Brown said") == "It costs 3.5 euros."
    assert split_sentences("I said no. He left.") == ["I said no.", "He left."]


def test_repeated_marks_stay_with_their_sentence():
    assert split_sentences("I love it!!! Really?!") == ["I love it!!!", "Really?!"]
    assert feed("I love it so much!!! Really.", size=2) == (["I love it so much!!!"], "Really.")
