"""Spanish, complete and natural: no English word in any text of a Spanish workbook, document,
grading report or `tracer check` output, for every registered model; the team's own wording; and
where a text names a spreadsheet function whose Spanish name differs, both names.

The English words are found generically: every word the English texts of the templates use and
no Spanish text does, plus common English words.  A new tensor, op or model is covered as soon as
its texts are in the templates."""

from __future__ import annotations

import dataclasses
import re
from functools import cache
from pathlib import Path

import pytest
from xlsx_parts import strings

from tracer import api
from tracer.render.template import FUNCTION, _folder, _load, tomllib

COMMON_ENGLISH = {
    "the", "of", "and", "with", "each", "is", "are", "from", "to", "by", "for", "in", "on", "its",
    "this", "that", "which", "when", "where", "if", "else", "every", "first", "next", "row", "rows",
    "column", "columns", "cell", "cells", "sum", "input", "inputs", "output", "outputs", "weights",
    "value", "values", "gradient", "gradients", "number", "shape", "repeated", "other", "largest",
    "taken", "starting", "left", "mean", "pixels", "before", "after", "nearest", "greedy", "sampled",
    "fake", "slope", "text", "window", "word", "words", "right", "wrong", "missing", "own", "carried",
    "expected", "score", "counting", "blank", "you", "wrote", "your", "step", "gives", "reference",
    "mistake", "made", "exercise", "fill", "iteration", "iterations",
}
TECHNICAL = {
    "token", "tokens", "prompt", "embedding", "embeddings", "softmax", "logits", "logit", "feed",
    "forward", "one", "hot", "sigmoid", "tanh", "exp", "ln", "max", "min", "argmax", "cos", "sin",
    "mse", "bce", "id", "ids", "tracer", "check", "excel", "libreoffice", "google", "sheets", "ctrl",
    "transformer", "skip", "gram", "word2vec", "gpt", "adam", "sgd", "bpe", "mnist", "elbo", "kl",
    "gan", "vae", "relu", "gelu", "layernorm",
}


def _texts(node, lang=None):
    """(language or None, text) of every string of a template, by the key it sits under."""
    if isinstance(node, dict):
        for key, value in node.items():
            k = lang
            if key in ("en", "es"):
                k = key
            elif re.fullmatch(r"(note|symbol|equation|equations)_(en|es)", key):
                k = key.rsplit("_", 1)[1]
            yield from _texts(value, k)
    elif isinstance(node, list):
        for value in node:
            yield from _texts(value, lang)
    elif isinstance(node, str):
        yield lang, node


def words(text: str) -> list[str]:
    """The words of a text to check, lower case: identifiers (x_fake, --lr, W1, τ2), spreadsheet
    functions and acronyms (SUMPRODUCT, BPE) and names in camel case (LayerNorm) are left out."""
    out = []
    for chunk in re.split(r"[\s()\[\]{},;:·=+*/<>|\"“”«»…!?¿¡←→↑↓✎✓✗]+", text):
        if chunk.startswith("-"):  # --lr, −0.5
            continue
        chunk = chunk.strip(".'’`-")
        if not chunk or "_" in chunk or any(c.isdigit() for c in chunk):
            continue
        if chunk.isupper() or any(c.isupper() for c in chunk[1:]):
            continue
        out += [w.lower() for w in re.findall(r"[^\W\d_]+", chunk)]
    return out


@cache
def english() -> frozenset:
    """Words of the English texts of every template that no Spanish text uses, and common English."""
    en, es = set(), set()
    for path in sorted(Path(str(_folder())).glob("*.toml")):
        data = tomllib.loads(path.read_text("utf-8"))
        for lang, text in _texts(data):
            (en if lang == "en" else es if lang == "es" else set()).update(words(text))
    return frozenset((en - es | COMMON_ENGLISH) - TECHNICAL)


def choice_values() -> set:
    """The options' literal values (word, bilinear, sgd): a settings cell shows them as typed."""
    return {str(c) for m in api.MODELS.values() for f in dataclasses.fields(m.Config)
            for c in f.metadata.get("choices", ())}


def english_in(texts, allowed=()) -> list:
    """(where, text, English words) of every text that has some; `allowed`: words that are data
    (the tokens of the Spanish corpus, the tensor names an mlp file chose)."""
    found, literal, known = [], choice_values(), english() - set(allowed)
    for where, text in texts:
        if text in literal:
            continue
        hits = sorted({w for w in words(text) if w in known})
        if hits:
            found.append((where, text[:120], hits))
    return found


def functions_without_local_names(texts) -> list:
    names = _load("common")["functions"]["es"]
    return [(where, text[:120]) for where, text in texts
            for f in set(FUNCTION.findall(text)) if names.get(f, f) != f and names[f] not in text]


def test_the_word_list_is_real():
    """The derived list holds the English that leaked before (and the check sees it)."""
    known = english()
    assert {"of", "column", "greedy", "nearest", "fake", "each", "the"} <= known
    assert not {"de", "columna", "token", "softmax", "real", "a"} & known
    assert english_in([("x", "{out} = 1ᵀ · a   (Σ of each column)")]) == [("x", "{out} = 1ᵀ · a   (Σ of each column)",
                                                                            ["column", "each", "of"])]
    assert english_in([("x", "D_a₁(fake) y x_fake, --optimizer adam, SUMPRODUCT, LayerNorm")]) == [
        ("x", "D_a₁(fake) y x_fake, --optimizer adam, SUMPRODUCT, LayerNorm", ["fake"])]
    assert functions_without_local_names([("x", "SUMPRODUCT(a, b)")]) == [("x", "SUMPRODUCT(a, b)")]
    assert functions_without_local_names([("x", "SUMPRODUCT(a, b) (SUMAPRODUCTO); MAX(a)")]) == []


def data_words(tape) -> set:
    """Words that are data, not prose: the Spanish corpus's, the names an mlp file gave, the code of
    a PyTorch file (its lines are quoted)."""
    from tracer.data.text import load_text

    return (set(words(load_text(None, "es"))) | {w for name in tape.meta.get("tensors", {}) for w in words(name)}
            | set(words(tape.meta.get("code", ""))))


@pytest.mark.parametrize("model", list(api.MODELS))
def test_spanish_workbooks_have_no_english(default_workbook, model):
    texts = strings(default_workbook(model, "es"))
    assert len(texts) > 50
    run = api.run(model, "es")
    assert english_in(texts, data_words(run.tape)) == []
    # a note is laid out in lines: its function names (and their Spanish names) in the whole text
    from tracer.render.layout import Block, Layout
    from tracer.render.template import Template

    layout = Layout(run.tape, Template.of(run.tape, "es"), run.settings)
    notes = [(b.tensor.name, b.note) for s in layout.sheets for b in s.parts if isinstance(b, Block)]
    assert functions_without_local_names(notes + [("intro", layout.tpl.m("intro"))]) == []


def document_lines(text: str) -> list[str]:
    """The prose of a Markdown document: no code fences, no code spans, no mathematics ($ … $,
    $$ … $$: symbols, not words), no HTML tags, no figure's file name, no escapes."""
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]*\$|</?small>|\]\([^)]*\)", " ", text, flags=re.S)  # and file names
    lines = [line for line in text.replace("\\", "").splitlines() if not line.startswith("```")]
    return [re.sub(r"``? ?[^`]*? ?``?", "", line) for line in lines]


@pytest.mark.parametrize("model", list(api.MODELS))
def test_spanish_documents_have_no_english(tmp_path, model):
    r = api.run(model, "es", **({"iterations": 1} if model != "mlp" else {}))
    path = tmp_path / f"{model}.md"
    r.save(path)
    lines = [(path.name, line) for line in document_lines(path.read_text("utf-8"))]
    assert english_in(lines, data_words(r.tape)) == []
    assert functions_without_local_names(lines) == []


def test_team_wording():
    """The team's words: propagación hacia adelante, retropropagación, conexión residual,
    desviación estándar, complete las celdas; none of the old ones anywhere in a Spanish text."""
    es = " ".join(text for path in Path(str(_folder())).glob("*.toml")
                  for lang, text in _texts(tomllib.loads(path.read_text("utf-8"))) if lang == "es")
    for old in ("pase hacia", "hacia atrás", "residuo", "desviación típica", "rellene"):
        assert old not in es.lower(), old
    for new in ("Propagación hacia adelante", "Retropropagación", "conexión residual", "desviación estándar",
                "complete las celdas"):
        assert new in es, new


def test_check_answers_in_spanish(tmp_path, run_main):
    """A Spanish exercise is graded in Spanish: the report, the Grade sheet and every cell note; a
    number typed with a decimal comma where the spreadsheet reads text gets a hint that says so."""
    from openpyxl import load_workbook
    from student import answers, fill

    exercise = tmp_path / "ejercicio.xlsx"
    code, _, err = run_main("exercise", "mlp", "--blank", "update", "--lang", "es", "-o", exercise)
    assert code == 0, err
    cells = answers(exercise)
    text, wrong, missing = cells[0], cells[1], cells[2]
    as_text = f"{text[-1]:.8f}".replace(".", ",")  # "0,35891648": text to an English spreadsheet

    def key(c):
        return c[0].key, c[1], c[2]

    def value(c):
        return as_text if key(c) == key(text) else c[-1] + 1 if key(c) == key(wrong) else c[-1]

    filled = fill(exercise, tmp_path / "resuelto.xlsx", value=value, skip=lambda c: key(c) == key(missing))
    report = tmp_path / "corregido.xlsx"
    code, out, err = run_main("check", filled, "--report", report)
    assert code == 1, err
    lines = out.splitlines()[:-1]  # the last line is the command's own: wrote … cells marked
    assert any("nota:" in line for line in lines) and any("errores propios 2" in line for line in lines)
    assert f"'{as_text}' es texto, no un número" in out and text[-1] != 0
    assert english_in([("salida", line) for line in lines]) == []
    wb = load_workbook(report)
    assert wb.sheetnames[0] == "Calificación"
    grade_lines = [("Calificación", c.value) for row in wb["Calificación"].iter_rows() for c in row if c.value]
    notes = [(ws.title, c.comment.text) for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.comment]
    assert len(notes) == 3 and any("es texto, no un número" in n for _, n in notes)
    assert english_in(grade_lines + notes) == []


@pytest.mark.parametrize("model", list(api.MODELS))
def test_every_option_has_words_in_both_languages(model):
    """The overview and the documents say what each option is (not only its flag: --d-model)."""
    from tracer.render.template import LANGS, Template

    for lang in LANGS:
        tpl = Template(model, lang)
        for f in dataclasses.fields(api.MODELS[model].Config):
            label = tpl.setting(f.name)
            assert not label.startswith("--"), (model, lang, f.name, label)
    assert Template("transformer").setting("layers") == "transformer blocks  (--layers)"
