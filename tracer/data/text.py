"""Text in: the built-in corpora, the user's text file, and three tokenizers (char, word, bpe).

Pure data code: no tape, no workbook. The language models (skip-gram, attention, transformer)
read a text with ``load_text`` and turn it into token ids with ``tokenize``.

Corpora
    ``tracer/data/corpus_en.txt`` and ``corpus_es.txt``, written for teaching: 28 short
    lower-case sentences each, one per line, about 40 different words. Pairs of words share
    their contexts so that skip-gram brings their embeddings close: dog/cat (perro/gato),
    king/queen (rey/reina), green/blue (verde/azul), fire/sun (fuego/sol), ice/winter
    (hielo/invierno); hot/cold (caliente/frío) sit in the same frame with different subjects.

Sentences (every tokenizer)
    The text is put in Unicode NFC form and lower-cased. Each line that is not blank is one
    sentence; its ends are stripped and every run of whitespace inside it becomes one space.

Tokenizers
    ``char``  every character is a token; a space is the visible token ``␣`` (SPACE).
    ``word``  the words of each sentence: runs of letters and digits, with an apostrophe
              allowed inside (``don't``, ``l'eau``); punctuation and ``_`` are dropped.
    ``bpe``   byte-pair encoding (Sennrich et al. 2016) learned on this text. Each word (as the
              ``word`` tokenizer finds it) starts as its characters plus the end-of-word marker
              ``␣`` as a symbol of its own: ``dog`` → ``d o g ␣``. A merge joins the most
              frequent pair of adjacent symbols into one new symbol, in every word; pairs never
              cross words. Counts are over the whole text (a word that occurs 3 times counts 3
              times). Ties go to the pair that occurs first in reading order. Learning stops
              after ``merges`` merges, or earlier when no pair occurs twice (``stop_reason``
              then says so).

Sentence boundaries
    With ``boundary=True`` (the default) every sentence, the last included, is followed by the
    token ``⏎`` (BOUNDARY) in ``tokens``/``ids``: next-token models learn where a sentence
    ends. With ``boundary=False`` ``⏎`` is not used at all and is not in the vocabulary (what
    skip-gram wants). Either way ``sentences`` holds each sentence's ids without ``⏎``, so
    context windows need not cross sentences.

Vocabulary order (id → token)
    ``char`` and ``word``: order of first appearance in ``tokens``. ``bpe``: the initial symbols
    in order of first appearance, then each merge's new token in merge order (a merged token
    that is already in the vocabulary keeps its id). A bpe vocabulary may hold initial symbols
    that no longer occur in ``tokens`` after the merges, as in every BPE vocabulary.

Every problem raises ``TracerError`` with a one-line message.
"""

from __future__ import annotations

import importlib.resources
import os
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence, Union

from tracer.errors import TracerError, read_bytes

#: Languages with a built-in corpus, and its file in tracer/data.
CORPORA = {"en": "corpus_en.txt", "es": "corpus_es.txt"}

#: The tokenizers, as ``--tokenizer`` spells them.
TOKENIZERS = ("char", "word", "bpe")

#: Largest text accepted, in characters: every token may become a row of a workbook.
MAX_CHARS = 20_000

#: Default number of BPE merges (``--merges``).
DEFAULT_MERGES = 10

#: How many runner-up pairs a ``Merge`` records next to the winner.
COMPETITORS = 3

#: A space as a char token, and the end-of-word marker of bpe.
SPACE = "␣"

#: The token that ends each sentence (``boundary=True``).
BOUNDARY = "⏎"

_BOM = b"\xef\xbb\xbf"

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")

PathArg = Union[str, "os.PathLike[str]"]

Pair = tuple[str, str]


@dataclass(frozen=True)
class Merge:
    """One BPE merge and the counts that chose it.

    Attributes:
        pair: the two adjacent symbols merged, e.g. ``("e", "s")``.
        count: how often the pair occurred in the whole text just before this merge.
        competitors: up to ``COMPETITORS`` runner-up pairs with their counts, highest count
            first (ties in reading order), e.g. ``((("s", "t"), 9), (("l", "o"), 7))``.
        token: the new symbol, ``pair[0] + pair[1]``.
    """

    pair: Pair
    count: int
    competitors: tuple[tuple[Pair, int], ...]
    token: str


@dataclass
class Tokenized:
    """A text as tokens and ids.

    Attributes:
        kind: ``"char"``, ``"word"`` or ``"bpe"``.
        tokens: the token sequence of the whole text, length T (sentences in order, each
            followed by ``BOUNDARY`` when ``boundary`` is true).
        ids: ``vocab`` index of each token, length T.
        vocab: the V distinct tokens; ``vocab[i]`` is the token of id ``i`` (order: see the
            module docstring).
        sentences: one list of ids per sentence, without ``BOUNDARY``; every list non-empty.
        boundary: whether ``BOUNDARY`` ends each sentence in ``tokens``.
        merges: bpe only: the merges in the order learned (at most ``merges_requested``).
        merges_requested: bpe only: the ``merges`` asked for (0 otherwise).
        stop_reason: bpe only: why fewer merges than requested were learned, else ``""``.
        word_counts: bpe only: each distinct word with its number of occurrences, in order of
            first appearance (the counts every pair count is a sum of).
    """

    kind: str
    tokens: list[str]
    ids: list[int]
    vocab: list[str]
    sentences: list[list[int]]
    boundary: bool = True
    merges: list[Merge] = field(default_factory=list)
    merges_requested: int = 0
    stop_reason: str = ""
    stop: str = ""  # the same as a code for the workbook's own words: "single" or "rare"
    word_counts: list[tuple[str, int]] = field(default_factory=list)

    @property
    def index(self) -> dict[str, int]:
        """Token → id, the inverse of ``vocab``."""
        return {token: i for i, token in enumerate(self.vocab)}

    def decode(self, ids: Sequence[int]) -> list[str]:
        """The tokens of ``ids`` (a list of T ints, each in 0..V-1).

        Raises:
            TracerError: an id is out of range.
        """
        out = []
        for i in ids:
            if not 0 <= i < len(self.vocab):
                raise TracerError(f"token id {i} is out of range: the vocabulary has ids 0-{len(self.vocab) - 1}")
            out.append(self.vocab[i])
        return out

    def detokenize(self, ids: Sequence[int]) -> str:
        """``ids`` as plain text: ``BOUNDARY`` becomes a newline, ``SPACE`` a space, words are
        separated by a space (``word``) and bpe's end-of-word spaces are trimmed at line ends.
        ``detokenize(self.ids)`` is the normalized text, one sentence per line, with a final
        newline when ``boundary`` is true.
        """
        lines, current = [], []
        for token in self.decode(ids):
            if token == BOUNDARY:
                lines.append(current)
                current = []
            else:
                current.append(token)
        lines.append(current)
        sep = " " if self.kind == "word" else ""
        rendered = [sep.join(line).replace(SPACE, " ") for line in lines]
        if self.kind == "bpe":
            rendered = [line.rstrip(" ") for line in rendered]
        return "\n".join(rendered)

    def encode(self, text: str, option: str = "--prompt") -> list[int]:
        """The ids of a prompt, tokenized with the same rules and this vocabulary (bpe: this
        text's merges, in order); sentences (lines) are joined by ``BOUNDARY`` when
        ``boundary`` is true, and none is appended.

        Raises:
            TracerError: a token is not in the vocabulary (the first one is named); the prompt
                gives no tokens.  The message names the option the text came from, ``option``.
        """
        tokens: list[str] = []
        for sentence in split_sentences(text):
            if self.kind == "char":
                piece = [SPACE if c == " " else c for c in sentence]
            elif self.kind == "word":
                piece = words(sentence)
            else:  # each word: its characters and the end-of-word marker, merged like the text's
                piece = []
                for w in words(sentence):
                    symbols = tuple(w) + (SPACE,)
                    for m in self.merges:
                        symbols = _merge(symbols, m.pair, m.token)
                    piece += symbols
            if piece and tokens and self.boundary:  # the text had BOUNDARY after each sentence
                tokens.append(BOUNDARY)
            tokens += piece
        if not tokens:
            raise TracerError(f"{option} gives no tokens with the {self.kind} tokenizer")
        index = self.index
        for token in tokens:
            if token not in index:
                raise TracerError(f"{option}: the token {token!r} is not in the vocabulary learned from the text "
                                  f"({len(self.vocab)} tokens; see the Tokens sheet)")
        return [index[t] for t in tokens]


# --- loading -----------------------------------------------------------------


def load_text(path: PathArg | None, lang: str = "en") -> str:
    """The text to tokenize.

    Args:
        path: a UTF-8 text file of at most ``MAX_CHARS`` characters (a leading byte-order mark
            is dropped); ``None`` means the built-in corpus of ``lang``.
        lang: ``"en"`` or ``"es"``: which built-in corpus (ignored when ``path`` is given).

    Returns:
        The whole text as a str, exactly as in the file.

    Raises:
        TracerError: no built-in corpus for ``lang``; the file is missing, a folder,
            unreadable, binary (NUL bytes), not valid UTF-8, larger than ``MAX_CHARS``
            characters, empty or only whitespace.
    """
    if path is None:
        if lang not in CORPORA:
            raise TracerError(f"no built-in corpus for language {lang!r}: choose {' or '.join(CORPORA)}")
        source = importlib.resources.files("tracer.data").joinpath(CORPORA[lang])
        name = f"the built-in {lang} corpus ({CORPORA[lang]})"
    else:
        source = Path(path)
        name = str(path)
    raw = read_bytes(source, name, "a text", 4 * MAX_CHARS + 1)
    if b"\0" in raw:
        raise TracerError(f"{name} is a binary file (it contains NUL bytes), not UTF-8 text")
    why = "the limit keeps workbooks readable"
    if len(raw) > 4 * MAX_CHARS:  # UTF-8 has at most 4 bytes a character
        raise TracerError(f"{name} is too large: more than {MAX_CHARS:,} characters ({why})")
    bom = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        text = raw[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = bom + exc.start
        raise TracerError(f"{name} is not valid UTF-8 text (byte 0x{raw[at]:02x} at offset {at}): save it as UTF-8") \
            from None
    if len(text) > MAX_CHARS:
        raise TracerError(f"{name} is too large: {len(text):,} characters, more than {MAX_CHARS:,} ({why})")
    if not text:
        raise TracerError(f"{name} is empty")
    if not text.strip():
        raise TracerError(f"{name} contains only whitespace")
    return text


# --- tokenizing --------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text``: NFC, lower case, one per non-blank line, whitespace runs → one
    space, ends stripped. Returns a list of non-empty str."""
    text = unicodedata.normalize("NFC", text).lower()
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def words(sentence: str) -> list[str]:
    """The words of one sentence, as the ``word`` and ``bpe`` tokenizers see them."""
    return _WORD.findall(sentence)


def tokenize(text: str, kind: str = "word", merges: int = DEFAULT_MERGES, boundary: bool = True) -> Tokenized:
    """Tokenize a text (see the module docstring for the rules).

    Args:
        text: the text, e.g. from ``load_text``.
        kind: ``"char"``, ``"word"`` or ``"bpe"``.
        merges: bpe only: how many merges to learn, ≥ 0 (ignored by char and word).
        boundary: end each sentence with the token ``BOUNDARY`` in ``tokens``/``ids``.

    Returns:
        A ``Tokenized``.

    Raises:
        TracerError: an unknown ``kind``; ``merges`` < 0 or not an int; the text contains
            ``SPACE`` or ``BOUNDARY`` (they are reserved); the text gives fewer than 2 tokens
            (``BOUNDARY`` not counted).
    """
    if kind not in TOKENIZERS:
        raise TracerError(f"unknown tokenizer {kind!r}: choose {', '.join(TOKENIZERS[:-1])} or {TOKENIZERS[-1]}")
    if isinstance(merges, bool) or not isinstance(merges, int):
        raise TracerError(f"--merges must be a whole number, got {merges!r}")
    if merges < 0:
        raise TracerError(f"--merges must be 0 or more, got {merges}")
    for symbol, role in ((SPACE, "a space"), (BOUNDARY, "a sentence end")):
        if symbol in text:
            raise TracerError(f"the text contains {symbol!r}, which the tokenizers reserve for {role}")

    sentences = split_sentences(text)
    result = Tokenized(kind=kind, tokens=[], ids=[], vocab=[], sentences=[], boundary=boundary)
    if kind == "char":
        pieces = [[SPACE if c == " " else c for c in s] for s in sentences]
    elif kind == "word":
        pieces = [words(s) for s in sentences]
    else:
        pieces, base = _bpe(sentences, merges, result)
    pieces = [p for p in pieces if p]

    count = sum(len(p) for p in pieces)
    if count < 2:
        raise TracerError(
            f"the text gives {count} token{'' if count == 1 else 's'} with the {kind} tokenizer; at least 2 are needed"
        )

    index: dict[str, int] = {}
    if kind == "bpe":  # initial symbols, then merged tokens in merge order
        for token in base + [m.token for m in result.merges]:
            index.setdefault(token, len(index))
    for piece in pieces:
        ids = [index.setdefault(token, len(index)) for token in piece]
        result.sentences.append(ids)
        result.tokens += piece
        result.ids += ids
        if boundary:
            result.tokens.append(BOUNDARY)
            result.ids.append(index.setdefault(BOUNDARY, len(index)))
    result.vocab = list(index)
    return result


def _bpe(sentences: list[str], merges: int, result: Tokenized) -> tuple[list[list[str]], list[str]]:
    """Learn ``merges`` BPE merges on the words of ``sentences``; fill ``result.merges``,
    ``merges_requested``, ``stop_reason`` and ``word_counts``.

    Returns:
        ``(pieces, base)``: each sentence's final symbols (a list per sentence), and the
        initial symbols in order of first appearance.
    """
    sentence_words = [words(s) for s in sentences]
    counts = Counter(w for ws in sentence_words for w in ws)  # insertion order = first appearance
    split = {w: tuple(w) + (SPACE,) for w in counts}
    base = list(dict.fromkeys(symbol for w in split.values() for symbol in w))

    result.merges_requested = merges
    result.word_counts = list(counts.items())
    for _ in range(merges):
        pairs: dict[Pair, int] = {}  # insertion order = reading order of first occurrence
        for w, symbols in split.items():
            for pair in zip(symbols, symbols[1:]):
                pairs[pair] = pairs.get(pair, 0) + counts[w]
        ranked = sorted(pairs.items(), key=lambda item: -item[1])  # stable: ties keep reading order
        done = f"stopped after {len(result.merges)} of {merges} merges"
        if not ranked:
            result.stop_reason, result.stop = f"{done}: every word is a single token", "single"
            break
        (pair, count), rest = ranked[0], ranked[1:]
        if count < 2:
            result.stop_reason, result.stop = f"{done}: no pair of adjacent tokens occurs twice", "rare"
            break
        token = pair[0] + pair[1]
        result.merges.append(Merge(pair, count, tuple(rest[:COMPETITORS]), token))
        split = {w: _merge(symbols, pair, token) for w, symbols in split.items()}

    pieces = [[symbol for w in ws for symbol in split[w]] for ws in sentence_words]
    return pieces, base


def _merge(symbols: tuple[str, ...], pair: Pair, token: str) -> tuple[str, ...]:
    """``symbols`` with every occurrence of ``pair`` replaced by ``token``, left to right."""
    out, i = [], 0
    while i < len(symbols):
        if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == pair:
            out.append(token)
            i += 2
        else:
            out.append(symbols[i])
            i += 1
    return tuple(out)
