"""The GAN's workbooks (default, Adam, amplifier, batches) and the VAE with Adam recalculate
in LibreOffice to the recorded values; the sheets show the game in order, the pictures and the
overview's chart of D(x_real), D(x_fake) and both losses."""

from __future__ import annotations

import pytest

from tracer.checks import verify
from tracer.render.template import Template

RUNS = ["gan", "gan-adam-upscale", "gan-nearest-4", "vae-adam", "vae-size4"]


@pytest.mark.parametrize("key", RUNS)
def test_workbook_verifies(engine, verified, key):
    report = verified(key, engine=engine)
    assert report.ok, "\n".join(report.lines(limit=20))
    assert report.errors == [] and report.n_mismatches == 0 and report.max_rel_err <= 1e-9
    assert report.n_formulas > {"gan": 300_000, "vae-size4": 4_000}.get(key, 10_000)


def test_a_wrong_adam_formula_is_caught(engine, run_workbook, run_book, tmp_path):
    """Guard: break the bias correction of one cell of m̂ (β₁^t → β₁^(t+1)); verify fails there."""
    from test_workbook_verify import rewrite_formula

    src, book = run_workbook("vae-adam"), run_book("vae-adam")
    sheet = "Iteration 3"
    target = next((r, c) for (r, c), f in sorted(book.formulas[sheet].items())
                  if "/(1-IFERROR(beta_1^" in f and abs(book.cached[sheet][(r, c)]) > 1e-6)
    cell = f"{chr(64 + target[1])}{target[0]}"
    rewrite_formula(src, tmp_path / "broken.xlsx", sheet, cell,
                    lambda f: f.replace("/(1-IFERROR(beta_1^", "/(1-IFERROR(beta_1*beta_1^"))
    report = verify.verify_workbook(tmp_path / "broken.xlsx", engine=engine)
    assert not report.ok and report.n_mismatches >= 1
    assert cell in "\n".join(report.lines(limit=None))


def test_gan_sheets_follow_the_game(run_book):
    book, tpl = run_book("gan-adam-upscale"), Template("gan", "en")
    texts = [v for (r, c), v in sorted(book.constants["Iteration 1"].items()) if isinstance(v, str)]
    titles = [t for t in texts if t[:2].strip().isdigit() and "  " in t[:4]]  # "1  Generate: …"
    order = ["generate", "discriminate", "d_loss", "d_backward", "d_update", "g_loss", "g_backward",
             "g_update", "upscale"]
    assert titles == [f"{n}  {tpl.section(s)}" for n, s in enumerate(order, start=1)]


def test_spanish_section_titles_exist():
    en, es = Template("gan", "en"), Template("gan", "es")
    for s in ["generate", "discriminate", "d_loss", "d_backward", "d_update", "g_loss", "g_backward", "g_update", "upscale"]:
        assert es.section(s) != en.section(s)


def test_pictures_and_overview(run_book, run_tape):
    cfg, tape = run_tape("gan-adam-upscale")  # batch 2, ×2 bilinear
    book = run_book("gan-adam-upscale")
    pics = book.formulas["Pictures"]
    labels = [v for v in book.constants["Pictures"].values() if isinstance(v, str)]
    for name in ("x_real (real digit)", "x_fake (generated)", "x_fake upscaled"):  # over each run of images
        assert name in labels, labels
    assert labels.count("#1") == labels.count("#2") == cfg.iterations * 4  # each image of the batch captioned
    # per iteration: 2 real + 2 fake (28²) + 2 upscaled (56²) + 2 gradients (28²) pointing at
    # their cells, and the gradients' minimum and maximum (they are shaded by their own range)
    pixels = {rc: f for rc, f in pics.items() if not f.startswith(("MIN(", "MAX("))}
    assert len(pixels) == cfg.iterations * (6 * 28 * 28 + 2 * 56 * 56)
    assert len(pics) - len(pixels) == cfg.iterations * 2 * 2
    over = book.formulas["Overview"]
    averages = [f for f in over.values() if f.startswith("AVERAGE(")]
    assert len(averages) == 2 * cfg.iterations  # D(x_real) and D(x_fake) of a batch of 2
    headers = set(book.constants["Overview"].values())
    assert {"D(x_real)", "D(x_fake)", "L_D", "L_G"} <= headers
