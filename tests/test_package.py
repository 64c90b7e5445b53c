"""The wheel carries the templates and the MNIST sample; the templates cover every op, label and tensor."""

import re
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tracer import core
from tracer.models import MODELS
from tracer.render.template import LANGS, STATE, Template, _load

ROOT = Path(__file__).resolve().parent.parent


def test_resources_are_importable_package_data():
    templates = resources.files("tracer.templates")
    for model in MODELS:
        assert templates.joinpath(f"{model}.toml").is_file()
    assert templates.joinpath("common.toml").is_file()
    data = resources.files("tracer.data")
    assert data.joinpath("mnist-test-first100-images-idx3-ubyte.gz").is_file()
    assert data.joinpath("README.md").read_text("utf-8").count("CC BY-SA 3.0") >= 1


def test_every_op_has_an_equation_and_words_in_both_languages():
    common = _load("common")
    for name in core.OPS:
        entry = common["ops"][name]
        assert entry["equation"].startswith("{out}"), name
        for lang in LANGS:
            assert entry[lang].strip(), (name, lang)


def test_both_languages_have_the_same_labels():
    common = _load("common")
    assert set(common["en"]) == set(common["es"])
    for name in MODELS:
        model = _load(name)
        for key in ("title", "intro"):
            assert set(model[key]) == set(LANGS)
        for table in ("sections", "pictures"):
            for entry in model.get(table, {}).values():
                assert set(LANGS) <= set(entry), (name, table, entry)


SMALL_RUNS = {  # every kind of tensor a model can record: Adam's state, the amplifier
    "vae": lambda m: m.Config(iterations=1, hidden=2, optimizer="adam", batch=2, grid=2, samples=1, size=7),
    "gan": lambda m: m.Config(iterations=1, hidden=2, optimizer="adam", upscale=2),
    "skipgram": lambda m: m.Config(iterations=1, sentences=2, negative=3, optimizer="adam"),
    "attention": lambda m: m.Config(iterations=1, optimizer="adam", generate=3, context=4),
    "transformer": lambda m: m.Config(iterations=1, optimizer="adam", layers=2, generate=3, context=4),
    "rnn": lambda m: m.Config(iterations=1, optimizer="adam", generate=3, context=4),
    "lstm": lambda m: m.Config(iterations=1, optimizer="adam", generate=3, context=4),
    "bert": lambda m: m.Config(iterations=1, optimizer="adam", layers=2, context=4),
    "mlp": lambda m: m.Config(config="xor"),  # the template's default names, Adam, the LeakyReLU slope
    "diffusion": lambda m: m.Config(iterations=1, optimizer="adam", hidden=4, samples=2, steps=3),
    "flow": lambda m: m.Config(iterations=1, optimizer="adam", couplings=2, grid=3, samples=2),  # flow (issue 17)
    "torch": lambda m: m.Config(),  # the shipped VAE module (SGD); tests/test_torch.py: every other op and optimizer
}


@pytest.mark.parametrize("model", list(MODELS))
def test_every_tensor_has_a_symbol_and_description(model):
    """Every tensor a run records gets its text from a template: the model's, or common.toml's
    shared entries (Adam's cells, m[θ] … step[θ]); gradients d<loss>/d<x> are built from them."""
    m = MODELS[model]
    tape = m.trace(SMALL_RUNS[model](m))
    for lang in LANGS:
        tpl = Template(model, lang, tape.meta.get("tensors") if model == "torch" else None)  # the names are the file's
        for t in tape.tensors:
            if re.fullmatch(r"d[^/ ]+/d.+", t.name):
                continue
            if STATE.fullmatch(t.name):
                assert tpl.describe(t), (model, lang, t.name)
                continue
            entry = tpl._entry(t.name)
            assert entry.get("symbol") and entry.get(lang), (model, lang, t.name)
    sections = {t.section for t in tape.tensors if t.iteration}
    tpl = Template(model, "es")
    assert all(tpl.section(s) for s in sections)


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_wheel_ships_templates_and_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("tracer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"tracer/templates/common.toml", "tracer/templates/vae.toml",
            "tracer/data/mnist-test-first100-images-idx3-ubyte.gz",
            "tracer/data/mnist-test-first100-labels-idx1-ubyte.gz", "tracer/data/README.md",
            "tracer/data/corpus_en.txt", "tracer/data/corpus_es.txt", "tracer/templates/gan.toml",
            "tracer/templates/document.toml"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)


@pytest.mark.parametrize("model", list(MODELS))
def test_equations_in_both_languages(model):
    en, es = Template(model, "en").equations(), Template(model, "es").equations()
    assert len(en) == len(es) > 3 and en != es
