"""The wheel carries the templates and the MNIST sample; the templates cover every op, label and tensor."""

import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

from tracer import ops
from tracer.models import MODELS, vae
from tracer.template import LANGS, _load

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
    for name in ops.OPS:
        entry = common["ops"][name]
        assert entry["equation"].startswith("{out}"), name
        for lang in LANGS:
            assert entry[lang].strip(), (name, lang)


def test_both_languages_have_the_same_labels():
    common = _load("common")
    assert set(common["en"]) == set(common["es"])
    model = _load("vae")
    for key in ("title", "intro"):
        assert set(model[key]) == set(LANGS)


def test_every_vae_tensor_has_a_symbol_and_description():
    tape = vae.trace(vae.Config(iterations=1))
    tensors = _load("vae")["tensors"]
    named = {t.name for t in tape.tensors if not t.name.startswith("dL/d")}
    for name in named:
        assert tensors[name]["symbol"] and tensors[name]["en"] and tensors[name]["es"], name


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="needs the source tree")
def test_the_wheel_ships_templates_and_data(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("tracer-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"tracer/templates/common.toml", "tracer/templates/vae.toml",
            "tracer/data/mnist-test-first100-images-idx3-ubyte.gz",
            "tracer/data/mnist-test-first100-labels-idx1-ubyte.gz", "tracer/data/README.md"} <= names
    assert any(n.endswith("entry_points.txt") for n in names)
