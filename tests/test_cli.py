"""The `tracer` command line, run as a user runs it (a subprocess): outputs, exit codes, errors.

An error is exit code 2 and one line on stderr starting with 'error:' — no traceback, and no file
left behind.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tracer import __version__
from tracer.cli import MODELS
from tracer.data import mnist


def tracer(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "tracer.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout)


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def assert_clean_error(result, folder: Path, *words, existing=()):
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert files_under(folder) == sorted(existing)


def idx_images(images: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, 3]) + np.asarray(images.shape, dtype=">u4").tobytes()
    return header + images.astype(np.uint8).tobytes()


# --- what works -------------------------------------------------------------------------------

def test_version():
    result = tracer("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"tracer, version {__version__}"


def test_help_lists_the_commands():
    result = tracer("--help")
    assert result.returncode == 0
    for command in ("run", "verify", "gradcheck", "models"):
        assert command in result.stdout


def test_models():
    result = tracer("models")
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.split()[0] == "vae"
    assert "variational autoencoder" in result.stdout
    lines = result.stdout.splitlines()
    starts = {len(line) - len(line[len(line.split()[0]):].lstrip()) for line in lines}
    assert len(lines) == len(MODELS) and len(starts) == 1  # every summary starts in the same column


def test_help_reads_well(run_main):
    """"Trace the {SUMMARY}": no summary starts with an article ("Trace the a …")."""
    for name, model in MODELS.items():
        assert model.SUMMARY.split()[0].lower() not in ("a", "an", "the", "one"), name
        code, out, _ = run_main("run", name, "--help")
        assert code == 0 and f"Trace the {model.SUMMARY.split()[0]}" in " ".join(out.split())


def test_gradcheck_counts_its_iterations_in_english(run_main):
    code, out, _ = run_main("gradcheck", "mlp")
    assert code == 0 and "over 1 iteration:" in out
    code, out, _ = run_main("gradcheck", "vae", "--hidden", 2, "--iterations", 2, "--sample", 2)
    assert code == 0 and "over 2 iterations:" in out


def test_run_vae_writes_the_workbook(tmp_path):
    out = tmp_path / "out" / "vae.xlsx"
    result = tracer("run", "vae", "--hidden", 3, "--iterations", 2, "-o", out)
    assert result.returncode == 0, result.stderr
    assert out.is_file() and zipfile.is_zipfile(out)
    assert files_under(tmp_path) == [out]  # no temporary file left beside it
    assert result.stdout.startswith(f"wrote {out}: 2 iterations")
    assert "Traceback" not in result.stderr


def test_run_default_output_path(tmp_path):
    result = tracer("run", "vae", "--hidden", 2, "--iterations", 1, "--lang", "es", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path) == [tmp_path / "outputs" / "vae-iterations1-hidden2_es.xlsx"]


@pytest.mark.parametrize("suffix", [".json", ".csv"])
def test_run_json_and_csv(tmp_path, suffix):
    out = tmp_path / f"trace{suffix}"
    result = tracer("run", "vae", "--hidden", 2, "--iterations", 2, "-o", out)
    assert result.returncode == 0, result.stderr
    assert files_under(tmp_path) == [out]
    losses = [float(v) for v in result.stdout.split("loss ")[1].split("(")[0].split("->")]
    assert len(losses) == 2 and losses[1] < losses[0]


@pytest.mark.parametrize("zipped", [False, True], ids=["plain", "gzipped"])
def test_run_with_own_mnist_file(tmp_path, zipped):
    images = mnist.load_images()[:3]
    raw = idx_images(images)
    source = tmp_path / ("three.idx.gz" if zipped else "three.idx")
    source.write_bytes(gzip.compress(raw) if zipped else raw)
    out = tmp_path / "run.json"
    result = tracer("run", "vae", "--mnist", source, "--digit", 2, "--iterations", 1, "--hidden", 2, "-o", out)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    x = next(t for t in data["tensors"] if t["name"] == "x")
    np.testing.assert_array_equal(np.array(x["value"]), images[2].reshape(1, 784) / 255.0)
    assert data["config"]["mnist"] == str(source) and data["config"]["digit"] == 2
    # the same file, a digit it does not have
    out.unlink()
    result = tracer("run", "vae", "--mnist", source, "--digit", 3, "-o", out)
    assert_clean_error(result, tmp_path, "--digit 3 is out of range", "3 digits", existing=[source])


# --- errors -----------------------------------------------------------------------------------

ERRORS = [
    (["run", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["gradcheck", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    (["run", "vae", "--iterations", "0"], "--iterations must be at least 1"),
    (["run", "vae", "--hidden", "0"], "--hidden must be at least 1"),
    (["run", "vae", "--latent", "0"], "--latent must be at least 1"),
    (["run", "vae", "--lr", "0"], "--lr must be positive"),
    (["run", "vae", "--lr", "-0.1"], "--lr must be positive"),
    (["run", "vae", "--digit", "100"], "--digit 100 is out of range"),
    (["run", "vae", "--digit", "-1"], "--digit -1 is out of range"),
    (["run", "vae", "--iterations", "abc"], "--iterations"),
    (["run", "vae", "--lang", "fr"], "--lang"),
    (["run", "vae", "--no-such-option"], "--no-such-option"),
    (["gradcheck", "vae", "--hidden", "0"], "--hidden must be at least 1"),
]


@pytest.mark.parametrize("args, words", ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_bad_options_are_one_line_errors(tmp_path, args, words):
    if args[0] == "run":
        args = args + ["-o", str(tmp_path / "out.xlsx")]
    assert_clean_error(tracer(*args, cwd=tmp_path), tmp_path, words)


def test_missing_mnist_file(tmp_path):
    result = tracer("run", "vae", "--mnist", tmp_path / "absent.idx", "-o", tmp_path / "out.xlsx")
    assert_clean_error(result, tmp_path, "MNIST file not found", "absent.idx")


def test_mnist_file_that_is_not_idx(tmp_path):
    text = tmp_path / "digits.txt"
    text.write_text("these are not digits\n")
    result = tracer("run", "vae", "--mnist", text, "-o", tmp_path / "out.xlsx")
    assert_clean_error(result, tmp_path, "not an IDX file", "digits.txt", existing=[text])


def test_output_folder_not_writable(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    result = tracer("run", "vae", "-o", blocker / "out.xlsx")
    assert_clean_error(result, tmp_path, "is a file, not a folder", existing=[blocker])
    assert blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("name", ["out.txt", "out.xls", "out"])
def test_bad_output_suffix(tmp_path, name):
    result = tracer("run", "vae", "-o", tmp_path / name)
    assert_clean_error(result, tmp_path, "must end in .xlsx, .json, .csv")


def test_output_that_is_a_folder(tmp_path):
    (tmp_path / "book.xlsx").mkdir()
    result = tracer("run", "vae", "--iterations", 1, "-o", tmp_path / "book.xlsx")
    assert_clean_error(result, tmp_path, "it is a folder")


def test_verify_missing_file(tmp_path):
    assert_clean_error(tracer("verify", tmp_path / "absent.xlsx"), tmp_path, "no such file")


@pytest.mark.parametrize("name", ["notes.xlsx", "notes.txt"])
def test_verify_text_file(tmp_path, name):
    text = tmp_path / name
    text.write_text("not a workbook\n")
    assert_clean_error(tracer("verify", text), tmp_path, "not an Excel workbook", existing=[text])


def test_diverging_lr_is_a_clear_error(tmp_path):
    """No numpy RuntimeWarnings (overflow in exp, ...) before the one error line."""
    result = tracer("run", "vae", "--lr", 1000, "-o", tmp_path / "out.xlsx")
    assert_clean_error(result, tmp_path, "training diverged", "--lr")


def test_negative_seed_is_a_clean_error(tmp_path):
    assert_clean_error(tracer("run", "vae", "--seed", -1, "-o", tmp_path / "out.xlsx"), tmp_path, "--seed")


def test_no_arguments_shows_usage():
    result = tracer()
    assert "Traceback" not in result.stderr
    assert "Usage" in result.stdout + result.stderr


def test_progress_bar_ends_at_its_length(tmp_path, run_main, monkeypatch):
    import contextlib

    import tracer.cli

    bars = []

    @contextlib.contextmanager
    def fake_progressbar(length, **kwargs):
        bar = {"length": length, "done": 0}
        bars.append(bar)

        class Bar:
            def update(self, n):
                bar["done"] += n

        yield Bar()

    monkeypatch.setattr(tracer.cli.click, "progressbar", fake_progressbar)
    code, out, err = run_main("run", "vae", "--hidden", 2, "--iterations", 1, "-o", tmp_path / "p.xlsx")
    assert code == 0, err
    assert len(bars) == 1 and bars[0]["length"] > 0
    assert bars[0]["done"] == bars[0]["length"]


def test_default_output_names_carry_the_options(tmp_path, monkeypatch, run_main):
    """Following the README and docs in order loses nothing: the default name carries every option that
    differs from the defaults (-o stays exact)."""
    from tracer import api

    def name(model, lang="en", what="", **options):
        return api.default_path(model, lang, what, api.configure(model, lang, **options)).as_posix()

    assert name("vae") == "outputs/vae.xlsx" and name("vae", "es") == "outputs/vae_es.xlsx"
    assert name("vae", optimizer="adam") == "outputs/vae-adam.xlsx"  # Adam's own lr is its default
    assert name("vae", lr=0.005) == "outputs/vae.xlsx"  # an option set to its default
    assert name("vae", optimizer="adam", lr=0.05) == "outputs/vae-adam-lr0.05.xlsx"
    assert name("mlp", config="xor") == "outputs/mlp-xor.xlsx" and name("mlp", config="classic_222") == "outputs/mlp.xlsx"
    assert name("gan", upscale=4) == "outputs/gan-upscale4.xlsx"
    assert name("gan", upscale=4, upscale_mode="nearest") == "outputs/gan-upscale4-nearest.xlsx"
    assert name("skipgram", "es") == "outputs/skipgram_es.xlsx"  # the corpus follows the language
    assert name("transformer", "es", "_exercise", tokenizer="bpe", prompt="el gato") == \
        "outputs/transformer-bpe-prompt-el_gato_exercise_es.xlsx"
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main("run", "mlp", "--config", "xor")
    assert code == 0 and "wrote outputs/mlp-xor.xlsx" in out and (tmp_path / "outputs" / "mlp-xor.xlsx").is_file()
    code, out, err = run_main("run", "mlp", "--config", "xor", "-o", "mine.xlsx")
    assert code == 0 and "wrote mine.xlsx" in out and (tmp_path / "mine.xlsx").is_file()


# --- messages that say what to do (issue 21) --------------------------------------------------

MESSAGES = [
    (["run", "vae", "--lr", "0,01"],
     "Invalid value for '--lr': '0,01' is not a valid float: type it with a decimal point: 0.01"),
    (["run", "diffusion", "--beta-start", "0,1"], "'0,1' is not a valid float: type it with a decimal point: 0.1"),
    (["check", "--rtol", "1,5e-3", "filled.xlsx"], "'1,5e-3' is not a valid float: type it with a decimal point: 1.5e-3"),
    (["run", "bert", "--fill", "the [MASK] eats zebra"],
     "--fill: the token 'zebra' is not in the vocabulary learned from the text (7 tokens; see the Tokens sheet)"),
    (["run", "diffusion", "--digit", "99"],
     "--batch 4 is too large: only 1 digit of class 9 from --digit 99 on (the sample's digits of class 9: 7, 9, 12, "
     "16, 20, 58, 62, 73, 78, 92, 99); --digit 73 or an earlier one of them gives 4"),
    (["run", "vae", "--digit", "99", "--batch", "3"],
     "--batch 3 is too large: only 1 digit from --digit 99 on; --digit 97 or an earlier one gives 3"),
    (["run", "gan", "--batch", "20"], "--batch 20 is too large: only 15 digits of class 7 from --digit 0 on (the "
     "sample's digits of class 7: 0, 17, 26, 34, 36, 41, 60, 64, 70, 75, …, 97); the sample has only 15 in all: "
     "lower --batch"),
    (["run", "vae", "--prompt", "x"], "No such option '--prompt' (`tracer run vae --help` lists the options)."),
    (["run", "vae", "--hiden", "3"], "No such option '--hiden'. Did you mean --hidden?"),
    (["run", "gan", "--lr_d", "3"], "No such option '--lr_d'. Did you mean --lr-d?"),
    (["run", "transformer", "--temp", "1"], "No such option '--temp'. Did you mean --temperature?"),
    (["exercise", "vae", "--blank", "backwards"],
     "--blank: no phase or tensor named 'backwards' (did you mean 'backward'?); phases: forward, loss, backward, "
     "update; `--blank help` lists the 54 steps"),
    (["exercise", "vae", "--blank", "xhat"], "--blank: no phase or tensor named 'xhat' (did you mean 'x_hat'?)"),
]


@pytest.mark.parametrize("args, message", MESSAGES, ids=[" ".join(a) for a, _ in MESSAGES])
def test_messages_say_what_to_do(refused, tmp_path, args, message):
    out = tmp_path / "out.xlsx"
    line = refused(*args, *(["-o", out] if args[0] in ("run", "exercise") else []))
    assert message in line, line
    assert len(line) < 250 and not out.exists()


def test_blank_help_lists_the_phases_and_every_step(run_main, tmp_path):
    code, out, _ = run_main("exercise", "vae", "--blank", "help", "-o", tmp_path / "out.xlsx")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "phases: forward, loss, backward, update" and len(lines) == 2 + 54
    assert "  x_hat  (x̂)" in lines and "  dL/dW1  (∂L/∂W₁)" in lines
    assert not (tmp_path / "out.xlsx").exists()


@pytest.mark.parametrize("word, names, close", [
    ("--prompt", ["--warmup", "--lr", "--hidden"], []),  # click suggested --warmup (difflib, one way round)
    ("--hiden", ["--help", "--hidden", "--size"], ["--hidden"]),
    ("--lr_d", ["--lr-d", "--lr-g"], ["--lr-d"]),
    ("--mask", ["--heads", "--mask-rate"], ["--mask-rate"]),
    ("backwards", ["forward", "loss", "backward", "update"], ["backward"]),
    ("sigmiod", ["identity", "sigmoid", "tanh"], ["sigmoid"]),
    ("--epochs", ["--iterations", "--seed"], []),
])
def test_only_close_names_are_suggested(word, names, close):
    from tracer.errors import close_names

    assert close_names(word, names) == close
