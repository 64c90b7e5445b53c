"""Every number the docs state about a run, computed from the run: losses, cell counts, printed
pages, generated texts, error messages.  A test here fails with the text the page should hold.

Runs are shared: the default workbooks come from conftest's `default_workbook` (written once per
session, also for the print and number-format tests), traces from `traced` below.  The statistics of
long warm-ups are checked where they are computed (test_stability, test_diffusion, test_flow)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
from conftest import CELLS
from documented import arrow, count, num, says, sci
from xlsx_parts import read_parts

from tracer import api


@functools.cache
def _traced(model: str, options: tuple) -> api.Run:
    return api.run(model, **dict(options))


def traced(model: str, **options) -> api.Run:
    """The run of `model` with these options (traced once per session; never modify it)."""
    return _traced(model, tuple(sorted(options.items())))


def losses(model: str, name: str = "loss", **options) -> list[float]:
    return traced(model, **options).losses[name]


@pytest.fixture(scope="module")
def cells(default_workbook):
    """cells(model) -> the cells of the model's default workbook (written once per session)."""
    return lambda model: CELLS[default_workbook(model)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """written(model, **options) -> the cells of that run's workbook (written once here)."""
    made = {}

    def get(model, **options):
        key = (model, tuple(sorted(options.items())))
        if key not in made:
            made[key] = traced(model, **options).save(tmp_path_factory.mktemp(model) / f"{model}.xlsx")
        return made[key]

    return get


def planned_pages(path) -> int:
    """The pages a workbook's page setup plans (one page wide: its breaks + 1 per visible sheet);
    test_print checks that LibreOffice prints exactly these."""
    return sum(len(s.row_breaks) + 1 for s in read_parts(path) if not s.hidden)


# --- the VAE ------------------------------------------------------------------------------------

def test_vae():
    page = "models/vae.md"
    sgd, adam = losses("vae"), losses("vae", optimizer="adam")
    says(page, f"| loss (SGD, lr 0.005) | {' | '.join(num(v) for v in sgd)} |",
         f"| loss (Adam, lr 0.01) | {' | '.join(num(v) for v in adam)} |")
    long = traced("vae", warmup=99, iterations=1, grid=0, samples=0)
    steps = long.warmup_losses["loss"] + long.losses["loss"]
    adam_long = traced("vae", optimizer="adam", warmup=99, iterations=1, grid=0, samples=0).losses["loss"]
    says(page, f"the loss of digit 0 goes {num(steps[0], 1)} → {num(steps[9], 1)} (step 10) → {num(steps[24], 1)} (25) → "
               f"{num(steps[49], 1)} (50) → {num(steps[99], 1)} (100) with SGD, and to {num(adam_long[-1], 1)} with Adam")
    hand = losses("vae", size=4, hidden=2)
    says(page, f"the loss goes {arrow(hand)}")


def test_adam(written):
    says("training.md", f"the hand-sized VAE (`--size 4 --hidden 2`) has {count(written('vae', size=4, hidden=2))} cells "
                        f"with SGD and {count(written('vae', size=4, hidden=2, optimizer='adam'))} with Adam",
         f"The default VAE's Adam learning rate is 0.01: loss {', '.join(num(v) for v in losses('vae', optimizer='adam'))}.")


def test_vae_divergence_message(run_main, tmp_path):
    code, out, err = run_main("run", "vae", "--lr", "0.1", "--iterations", "10", "-o", tmp_path / "v.xlsx")
    assert code == 2
    says("models/vae.md", f"`{err.strip()}`")


# --- the GAN ------------------------------------------------------------------------------------

def test_gan():
    page = "models/gan.md"
    r = traced("gan")
    series = {name: [float(r[name, k].mean()) for k in range(1, 5)] for name in ("D_real", "D_fake", "L_D", "D_gen", "L_G")}
    row = lambda label, name: f"| {label} | {' | '.join(num(v, 3) for v in series[name])} |"
    says(page, row("D(x_real)", "D_real"), row("D(x_fake)", "D_fake"), row("L_D", "L_D"),
         row("D′(x_fake) after D's step", "D_gen"), row("L_G", "L_G"))
    fake = series["D_fake"]
    says(page, f"(D(x_fake) {num(fake[0])} → {num(fake[1])})", f"pushed D(x_fake) back up ({num(fake[1])} → {num(fake[2])})")
    g = max(np.abs(r[f"dL_G/dG_{p}", 1]).max() for p in ("W1", "b1", "W2", "b2"))
    d = max(np.abs(r[f"dL_D/dD_{p}", 1]).max() for p in ("W1", "b1", "W2", "b2"))
    says(page, f"(in iteration 1 its largest element is {num(g, 3)}, D's {num(d)})")
    adam = traced("gan", optimizer="adam")
    says(page, f"`--optimizer adam`: D(x_fake) {', '.join(num(float(adam['D_fake', k].mean()), 3) for k in range(1, 5))}; "
               f"L_D {', '.join(num(v) for v in adam.losses['L_D'])}.")
