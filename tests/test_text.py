"""Tests for tracer.text: the built-in corpora, load_text and its errors, the char/word/bpe tokenizers."""

from collections import Counter

import pytest

from tracer.data import text
from tracer.data.text import (
    BOUNDARY,
    MAX_CHARS,
    SPACE,
    Merge,
    load_text,
    split_sentences,
    tokenize,
)
from tracer.errors import TracerError

PAIRS = {  # words that share their contexts, and words that should not
    "en": {"similar": [("dog", "cat"), ("king", "queen"), ("green", "blue"), ("fire", "sun"), ("ice", "winter")],
           "different": [("dog", "king"), ("cat", "queen"), ("dog", "ball"), ("hot", "cold")]},
    "es": {"similar": [("perro", "gato"), ("rey", "reina"), ("verde", "azul"), ("fuego", "sol"),
                       ("hielo", "invierno")],
           "different": [("perro", "rey"), ("gato", "reina"), ("perro", "pelota"), ("caliente", "frío")]},
}


def one_line_error(exc_info, *words):
    message = str(exc_info.value)
    assert "\n" not in message and message.strip() == message and message
    for word in words:
        assert word in message, (word, message)
    return message


def contexts(tokenized, window=2):
    """Each word → the set of words within ``window`` of it, inside its sentence."""
    out = {}
    for sentence in tokenized.sentences:
        words = tokenized.decode(sentence)
        for i, word in enumerate(words):
            out.setdefault(word, set()).update(words[max(0, i - window):i] + words[i + 1:i + 1 + window])
    return out


def jaccard(a, b):
    return len(a & b) / len(a | b)


# --- the built-in corpora ------------------------------------------------------


@pytest.mark.parametrize("lang", ["en", "es"])
def test_corpus_is_small_lower_case_one_sentence_a_line(lang):
    corpus = load_text(None, lang)
    lines = corpus.split("\n")
    assert lines[-1] == "" and all(lines[:-1])  # ends with a newline, no blank line
    sentences = lines[:-1]
    assert 20 <= len(sentences) <= 40
    assert corpus == corpus.lower()
    assert all(text.words(s) == s.split(" ") for s in sentences)  # words and single spaces only
    assert all(3 <= len(s.split()) <= 8 for s in sentences)
    assert len(set(sentences)) == len(sentences)
    vocab = set(corpus.split())
    assert 25 <= len(vocab) <= 45


def test_the_two_corpora_differ_and_spanish_has_accents():
    en, es = load_text(None, "en"), load_text(None, "es")
    assert "dog" in en.split() and "perro" in es.split()
    assert not set(en.split()) & {"perro", "gato", "rey"}
    assert {"á", "í", "ñ"} <= set(es)


@pytest.mark.parametrize("lang", ["en", "es"])
def test_corpus_pairs_share_their_contexts(lang):
    corpus = load_text(None, lang)
    ctx = contexts(tokenize(corpus, "word", boundary=False))
    counts = Counter(corpus.split())
    for a, b in PAIRS[lang]["similar"][:3]:  # the main pairs occur often; fire/sun, ice/winter once
        assert counts[a] >= 3 and counts[b] >= 3, (a, b)
    for a, b in PAIRS[lang]["similar"]:
        assert jaccard(ctx[a], ctx[b]) >= 0.8, (a, b, ctx[a], ctx[b])
    for a, b in PAIRS[lang]["different"]:
        assert jaccard(ctx[a], ctx[b]) < 0.3, (a, b, ctx[a], ctx[b])


def test_dog_and_cat_have_exactly_the_same_neighbours():
    for lang, (a, b) in (("en", ("dog", "cat")), ("es", ("perro", "gato"))):
        tok = tokenize(load_text(None, lang), "word", boundary=False)
        left_right = {w: Counter() for w in (a, b)}
        for sentence in tok.sentences:
            words = tok.decode(sentence)
            for i, word in enumerate(words):
                if word in left_right:
                    left_right[word][(words[i - 1] if i else None, words[i + 1] if i + 1 < len(words) else None)] += 1
        assert left_right[a] == left_right[b] and sum(left_right[a].values()) >= 5


@pytest.mark.parametrize("lang", ["en", "es"])
@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_corpus_tokenizes_and_round_trips(lang, kind):
    corpus = load_text(None, lang)
    tok = tokenize(corpus, kind)
    assert tok.kind == kind
    assert tok.decode(tok.ids) == tok.tokens
    assert [tok.vocab[i] for i in tok.ids] == tok.tokens
    assert tok.detokenize(tok.ids) == corpus  # the corpus is already normalized
    assert len(set(tok.vocab)) == len(tok.vocab)
    assert tok.tokens.count(BOUNDARY) == len(tok.sentences) == 28
    flat = [i for s in tok.sentences for i in s + [tok.index[BOUNDARY]]]
    assert flat == tok.ids
    assert BOUNDARY not in tokenize(corpus, kind, boundary=False).vocab
    if kind == "word":
        assert len(tok.vocab) == len(set(corpus.split())) + 1
    if kind == "char":
        assert len(tok.tokens) == len(corpus) and SPACE in tok.vocab and " " not in tok.vocab
    if kind == "bpe":
        assert len(tok.merges) == 10 and tok.stop_reason == ""
        assert all(m.count >= 2 for m in tok.merges)
        assert [m.count for m in tok.merges] == sorted((m.count for m in tok.merges), reverse=True)


def test_tokenize_is_deterministic():
    corpus = load_text(None, "es")
    for kind in text.TOKENIZERS:
        assert tokenize(corpus, kind, merges=25) == tokenize(corpus, kind, merges=25)


# --- load_text ----------------------------------------------------------------


def test_load_text_reads_a_utf8_file_and_ignores_lang(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("El niño come.\nThe cat eats.\n", encoding="utf-8")
    assert load_text(str(path), "en") == "El niño come.\nThe cat eats.\n"
    assert load_text(path, "es") == "El niño come.\nThe cat eats.\n"


def test_load_text_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello world\n")
    assert load_text(path, "en") == "hello world\n"


def test_load_text_accepts_exactly_the_limit(tmp_path):
    path = tmp_path / "limit.txt"
    path.write_text("ñ" * MAX_CHARS, encoding="utf-8")
    assert len(load_text(path, "en")) == MAX_CHARS


def test_unknown_corpus_language():
    with pytest.raises(TracerError) as exc:
        load_text(None, "fr")
    one_line_error(exc, "'fr'", "en or es")


@pytest.mark.parametrize("content, words", [
    (b"", ["empty"]),
    (b" \n\t\r\n  \n", ["only whitespace"]),
    (b"the dog\x00eats", ["binary", "NUL"]),
    (b"the caf\xe9 is open\n", ["not valid UTF-8", "0xe9", "offset 7"]),
    (b"\xef\xbb\xbfcaf\xc3\xa9 \xff\n", ["not valid UTF-8", "0xff", "offset 9"]),
    (b"a" * (MAX_CHARS + 1), ["too large", "20,001 characters", "20,000"]),
    ("é".encode() * (MAX_CHARS + 1), ["too large", "20,001 characters", "20,000"]),
    (b"word " * (MAX_CHARS * 2), ["too large", "more than 20,000 characters"]),
], ids=["empty", "whitespace", "nul", "latin1", "bom-then-bad-byte", "oversize", "oversize-2-byte",
        "oversize-bytes"])
def test_load_text_bad_files(tmp_path, content, words):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(TracerError) as exc:
        load_text(path, "en")
    one_line_error(exc, str(path), *words)


def test_load_text_missing_file_and_folder(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(TracerError) as exc:
        load_text(str(missing), "en")
    one_line_error(exc, "not found", str(missing))
    with pytest.raises(TracerError) as exc:
        load_text(str(tmp_path), "en")
    one_line_error(exc, "folder", str(tmp_path))


# --- sentences ------------------------------------------------------------------


def test_split_sentences_normalizes():
    raw = "  The  Dog\tRuns \r\n\n   \nNIÑO\u0301\n"  # "O" + combining acute → "ó" after NFC
    assert split_sentences(raw) == ["the dog runs", "niñó"]


# --- the char tokenizer ------------------------------------------------------------


def test_char_tokenizer_by_hand():
    tok = tokenize("Hi  yo!\n\n ab\n", "char")
    assert tok.tokens == ["h", "i", SPACE, "y", "o", "!", BOUNDARY, "a", "b", BOUNDARY]
    assert tok.vocab == ["h", "i", SPACE, "y", "o", "!", BOUNDARY, "a", "b"]
    assert tok.ids == [0, 1, 2, 3, 4, 5, 6, 7, 8, 6]
    assert tok.sentences == [[0, 1, 2, 3, 4, 5], [7, 8]]
    assert tok.merges == [] and tok.stop_reason == ""
    assert tok.detokenize(tok.ids) == "hi yo!\nab\n"
    assert tok.detokenize([7, 2, 0]) == "a h"


def test_char_tokenizer_without_boundary():
    tok = tokenize("ab\nba", "char", boundary=False)
    assert tok.tokens == ["a", "b", "b", "a"]
    assert tok.vocab == ["a", "b"]
    assert tok.ids == [0, 1, 1, 0]
    assert tok.sentences == [[0, 1], [1, 0]]
    assert tok.detokenize(tok.ids) == "abba"


# --- the word tokenizer ------------------------------------------------------------


def test_word_tokenizer_by_hand():
    tok = tokenize("The dog, the CAT.\nA dog's day!\n", "word")
    assert tok.tokens == ["the", "dog", "the", "cat", BOUNDARY, "a", "dog's", "day", BOUNDARY]
    assert tok.vocab == ["the", "dog", "cat", BOUNDARY, "a", "dog's", "day"]
    assert tok.ids == [0, 1, 0, 2, 3, 4, 5, 6, 3]
    assert tok.sentences == [[0, 1, 0, 2], [4, 5, 6]]
    assert tok.detokenize(tok.ids) == "the dog the cat\na dog's day\n"

    bare = tokenize("The dog, the CAT.\nA dog's day!\n", "word", boundary=False)
    assert bare.vocab == ["the", "dog", "cat", "a", "dog's", "day"]
    assert bare.ids == [0, 1, 0, 2, 3, 4, 5]
    assert bare.sentences == [[0, 1, 0, 2], [3, 4, 5]]


def test_word_tokenizer_splits_on_punctuation_and_keeps_accents():
    tok = tokenize("¡Hola, niño!  ¿Qué tal?--bien_bien\n...\n", "word")
    assert tok.tokens == ["hola", "niño", "qué", "tal", "bien", "bien", BOUNDARY]
    assert len(tok.sentences) == 1  # the line "..." has no words: no sentence


# --- BPE ------------------------------------------------------------------------------

# The classic example of Sennrich et al.: low ×5, lower ×2, newest ×6, widest ×3, each word as
# its characters plus the end-of-word symbol ␣. Worked by hand: before each merge, every pair's
# count is the sum of the counts of the words it occurs in; ties go to the pair read first.
#   low: l o w ␣ (5)   lower: l o w e r ␣ (2)   newest: n e w e s t ␣ (6)   widest: w i d e s t ␣ (3)
# 1. (e,s) 9 = 6+3, ties with (s,t) 9 and (t,␣) 9, read first; then (w,e) 8 = 2+6
# 2. (es,t) 9 beats (t,␣) 9 (read first), then (l,o) 7 = 5+2 and (o,w) 7
# 3. (est,␣) 9; then (l,o) 7, (o,w) 7, (n,e) 6
# 4. (l,o) 7 beats (o,w) 7; then (n,e) 6, (e,w) 6       [(w,e) is down to 2: only lower]
# 5. (lo,w) 7; then (n,e) 6, (e,w) 6, (w,est␣) 6
# 6. (n,e) 6; then (e,w) 6, (w,est␣) 6, (low,␣) 5
# 7. (ne,w) 6; then (w,est␣) 6, (low,␣) 5, (w,i) 3
# 8. (new,est␣) 6; then (low,␣) 5, (w,i) 3, (i,d) 3
# 9. (low,␣) 5; then (w,i) 3, (i,d) 3, (d,est␣) 3
# 10. (w,i) 3; 11. (wi,d) 3; 12. (wid,est␣) 3; 13. (low,e) 2; 14. (lowe,r) 2; 15. (lower,␣) 2;
# then every word is one token.
TEXTBOOK = "low " * 5 + "lower " * 2 + "newest " * 6 + "widest " * 3
TEXTBOOK_MERGES = [
    (("e", "s"), 9, [(("s", "t"), 9), (("t", SPACE), 9), (("w", "e"), 8)]),
    (("es", "t"), 9, [(("t", SPACE), 9), (("l", "o"), 7), (("o", "w"), 7)]),
    (("est", SPACE), 9, [(("l", "o"), 7), (("o", "w"), 7), (("n", "e"), 6)]),
    (("l", "o"), 7, [(("o", "w"), 7), (("n", "e"), 6), (("e", "w"), 6)]),
    (("lo", "w"), 7, [(("n", "e"), 6), (("e", "w"), 6), (("w", "est␣"), 6)]),
    (("n", "e"), 6, [(("e", "w"), 6), (("w", "est␣"), 6), (("low", SPACE), 5)]),
    (("ne", "w"), 6, [(("w", "est␣"), 6), (("low", SPACE), 5), (("w", "i"), 3)]),
    (("new", "est␣"), 6, [(("low", SPACE), 5), (("w", "i"), 3), (("i", "d"), 3)]),
    (("low", SPACE), 5, [(("w", "i"), 3), (("i", "d"), 3), (("d", "est␣"), 3)]),
    (("w", "i"), 3, [(("i", "d"), 3), (("d", "est␣"), 3), (("low", "e"), 2)]),
    (("wi", "d"), 3, [(("d", "est␣"), 3), (("low", "e"), 2), (("e", "r"), 2)]),
    (("wid", "est␣"), 3, [(("low", "e"), 2), (("e", "r"), 2), (("r", SPACE), 2)]),
    (("low", "e"), 2, [(("e", "r"), 2), (("r", SPACE), 2)]),
    (("lowe", "r"), 2, [(("r", SPACE), 2)]),
    (("lower", SPACE), 2, []),
]


def test_bpe_textbook_merges_and_their_counts():
    tok = tokenize(TEXTBOOK, "bpe", merges=20)
    got = [(m.pair, m.count, list(m.competitors)) for m in tok.merges]
    assert got == TEXTBOOK_MERGES
    assert all(m.token == m.pair[0] + m.pair[1] for m in tok.merges)
    assert tok.merges_requested == 20
    assert tok.stop_reason == "stopped after 15 of 20 merges: every word is a single token"
    assert tok.word_counts == [("low", 5), ("lower", 2), ("newest", 6), ("widest", 3)]
    assert tok.tokens == ["low␣"] * 5 + ["lower␣"] * 2 + ["newest␣"] * 6 + ["widest␣"] * 3 + [BOUNDARY]
    assert tok.detokenize(tok.ids) == TEXTBOOK.strip() + "\n"


def test_bpe_textbook_after_four_merges():
    tok = tokenize(TEXTBOOK, "bpe", merges=4)
    assert [m.token for m in tok.merges] == ["es", "est", "est␣", "lo"]
    assert tok.stop_reason == ""
    # initial symbols in order of first appearance, the merged tokens, then ⏎
    assert tok.vocab == ["l", "o", "w", SPACE, "e", "r", "n", "s", "t", "i", "d",
                         "es", "est", "est␣", "lo", BOUNDARY]
    low, lower = ["lo", "w", SPACE], ["lo", "w", "e", "r", SPACE]
    newest, widest = ["n", "e", "w", "est␣"], ["w", "i", "d", "est␣"]
    assert tok.tokens == low * 5 + lower * 2 + newest * 6 + widest * 3 + [BOUNDARY]
    assert tok.ids[:8] == [14, 2, 3, 14, 2, 3, 14, 2]
    assert tok.ids[-5:] == [2, 9, 10, 13, 15]  # w i d est␣ ⏎
    assert tok.sentences == [tok.ids[:-1]]
    assert tok.decode(tok.ids) == tok.tokens


def test_bpe_with_zero_merges_is_characters_and_end_of_word():
    tok = tokenize("ab a\n", "bpe", merges=0)
    assert tok.tokens == ["a", "b", SPACE, "a", SPACE, BOUNDARY]
    assert tok.vocab == ["a", "b", SPACE, BOUNDARY]
    assert tok.merges == [] and tok.stop_reason == ""


def test_bpe_stops_when_no_pair_occurs_twice():
    tok = tokenize("ab cd\n", "bpe", merges=3)
    assert tok.merges == []
    assert tok.stop_reason == "stopped after 0 of 3 merges: no pair of adjacent tokens occurs twice"
    tok = tokenize("ab ab cd\n", "bpe", merges=3)
    assert [m.token for m in tok.merges] == ["ab", "ab␣"]
    assert tok.merges[0] == Merge(("a", "b"), 2, ((("b", SPACE), 2), (("c", "d"), 1), (("d", SPACE), 1)), "ab")
    assert "after 2 of 3 merges" in tok.stop_reason and "twice" in tok.stop_reason
    assert tok.tokens == ["ab␣", "ab␣", "c", "d", SPACE, BOUNDARY]


def test_bpe_merges_never_cross_words_or_sentences():
    # ab ×2, b, a: (b,␣) 3 = 2+1 wins, then (a,b␣) 2; (a,␣) occurs once: stop
    tok = tokenize("ab\nab\nb a\n", "bpe", merges=5)
    assert [(m.pair, m.count) for m in tok.merges] == [(("b", SPACE), 3), (("a", "b␣"), 2)]
    assert tok.stop_reason == "stopped after 2 of 5 merges: no pair of adjacent tokens occurs twice"
    assert tok.tokens == ["ab␣", BOUNDARY, "ab␣", BOUNDARY, "b␣", "a", SPACE, BOUNDARY]
    assert tok.vocab == ["a", "b", SPACE, "b␣", "ab␣", BOUNDARY]
    assert tok.sentences == [[4], [4], [3, 0, 2]]
    assert tok.detokenize(tok.ids) == "ab\nab\nb a\n"


# --- tokenize errors ---------------------------------------------------------------------


def test_unknown_tokenizer():
    with pytest.raises(TracerError) as exc:
        tokenize("the dog", "chars")
    one_line_error(exc, "'chars'", "char, word or bpe")


@pytest.mark.parametrize("merges, words", [(-1, ["--merges", "-1"]), (2.5, ["--merges", "2.5"]),
                                           (True, ["--merges"])])
def test_bad_merges(merges, words):
    with pytest.raises(TracerError) as exc:
        tokenize("the dog", "bpe", merges=merges)
    one_line_error(exc, *words)


@pytest.mark.parametrize("source, kind, count", [
    ("a", "char", "1 token "), ("  \n \n", "char", "0 tokens"), ("dog!", "word", "1 token "),
    ("?! ... --", "word", "0 tokens"), ("?! ...", "bpe", "0 tokens"),
])
def test_too_few_tokens(source, kind, count):
    with pytest.raises(TracerError) as exc:
        tokenize(source, kind)
    one_line_error(exc, count, kind, "at least 2")


@pytest.mark.parametrize("symbol", [SPACE, BOUNDARY])
def test_reserved_symbols_in_the_text(symbol):
    with pytest.raises(TracerError) as exc:
        tokenize(f"the {symbol} dog", "word")
    one_line_error(exc, repr(symbol), "reserve")


def test_decode_out_of_range():
    tok = tokenize("the dog", "word")
    with pytest.raises(TracerError) as exc:
        tok.decode([0, 3])
    one_line_error(exc, "3", "0-2")
