"""Tokenized.encode: a prompt tokenized with the rules and the vocabulary learned from the text."""

import pytest

from tracer.data.text import BOUNDARY, SPACE, load_text, split_sentences, tokenize
from tracer.errors import TracerError

KINDS = ["char", "word", "bpe"]


def one_line(exc_info, *words):
    message = str(exc_info.value)
    assert "\n" not in message and message
    for word in words:
        assert word in message, (word, message)


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_training_sentence_encodes_to_its_own_ids(lang, kind):
    corpus = load_text(None, lang)
    tok = tokenize(corpus, kind)
    sentences = split_sentences(corpus)
    for n in (0, 1, len(sentences) - 1):
        assert tok.encode(sentences[n]) == tok.sentences[n], (kind, n)
    # the same after the normalization: case, NFC, runs of spaces, ends
    messy = "  " + sentences[0].upper().replace(" ", " \t  ") + "  "
    assert tok.encode(messy) == tok.sentences[0]
    # no BOUNDARY appended, one between two lines (the model learned it after each sentence)
    two = tok.encode(sentences[0] + "\n\n" + sentences[1] + "\n")
    assert two == tok.sentences[0] + [tok.index[BOUNDARY]] + tok.sentences[1]


def segments(tok, ids):
    """bpe tokens grouped by word: a word ends with the token that ends with SPACE."""
    words, current = [], []
    for t in tok.decode(ids):
        current.append(t)
        if t.endswith(SPACE):
            words.append(current)
            current = []
    return words


@pytest.mark.parametrize("lang", ["en", "es"])
def test_bpe_segments_every_word_as_the_text_did(lang):
    tok = tokenize(load_text(None, lang), "bpe", merges=25)
    assert len(tok.merges) == 25
    for sentence in tok.sentences:
        for word in segments(tok, sentence):
            assert tok.decode(tok.encode("".join(word).replace(SPACE, ""))) == word


def test_bpe_merges_a_new_word_of_known_pieces():
    tok = tokenize("the cat sat on the mat\nthe cat ate\n", "bpe", merges=6)
    assert [m.token for m in tok.merges][:3] == ["at", "e" + SPACE, "at" + SPACE]
    assert tok.decode(tok.encode("tat")) == ["t", "at" + SPACE]  # never in the text
    assert tok.decode(tok.encode("cat")) == ["cat" + SPACE]


def test_word_prompt_of_known_words_in_a_new_order():
    tok = tokenize(load_text(None, "en"), "word")
    words = tok.vocab[:3]
    assert tok.encode(" ".join(reversed(words))) == [2, 1, 0]


@pytest.mark.parametrize("kind, prompt, token", [
    ("word", "the zebra", "zebra"),
    ("char", "the dog?", "?"),
    ("bpe", "the fox", "f"),  # bpe starts from characters: an unseen one stays a token of its own
    ("char", "the dog q", "q"),
])
def test_unknown_tokens_are_named(kind, prompt, token):
    corpus = "the dog eats\nthe cat eats\n"
    tok = tokenize(corpus, kind)
    if kind == "char":
        assert token not in tok.vocab
    with pytest.raises(TracerError) as exc:
        tok.encode(prompt)
    one_line(exc, repr(token), "not in the vocabulary", f"({len(tok.vocab)} tokens", "Tokens sheet")


def test_the_first_unknown_token_is_the_one_named():
    tok = tokenize("the dog eats\nthe cat eats\n", "word")
    with pytest.raises(TracerError) as exc:
        tok.encode("the zebra and the yak")
    one_line(exc, "'zebra'")
    assert "'yak'" not in str(exc.value)


@pytest.mark.parametrize("kind, prompt", [(kind, prompt) for kind in KINDS for prompt in ("", "   \n\t ")] +
                         [("word", "?! ..."), ("bpe", "?! ...")])  # punctuation only: no word
def test_an_empty_prompt_is_an_error(kind, prompt):
    tok = tokenize("the dog eats\nthe cat eats\n", kind)
    with pytest.raises(TracerError) as exc:
        tok.encode(prompt)
    one_line(exc, "no tokens", kind)
