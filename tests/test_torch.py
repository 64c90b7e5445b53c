"""Your own PyTorch model (issue 26): every number of the trace against PyTorch itself.

A table of modules (an MLP, a small autoencoder, the shipped VAE, a one-block attention model, a
char-level RNN unrolled over nn.Linear cells, char-level models with nn.RNN and nn.LSTM, a GAN's
two networks) is traced with
tracer.from_torch and trained again by PyTorch's own loop (zero_grad, forward, backward, step)
from the same generator state: the loss, each module's output (forward hooks), every gradient
(.grad) and every parameter after optimizer.step() agree to 1e-10 relative (the largest error
over the tensor's largest value), in float64.  Then: the CLI on a file, the refusals (one line
each: the op and its line), the size known before any work, and the shipped example's workbook
verified in LibreOffice and IronCalc.

Without PyTorch these tests skip (CI installs it and sets TRACER_REQUIRE_TORCH: then they fail).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import require_torch

@pytest.fixture(scope="module")
def T():
    return require_torch()


TOL = 1e-10
PAGE = Path(__file__).resolve().parent.parent / "docs" / "models" / "torch.md"


def rel(a, b) -> float:
    """|a − b| at its largest, over the largest |b| (0 when both are 0)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b)) if b.size else 0.0
    err = np.max(np.abs(a - b)) if b.size else 0.0
    return 0.0 if err == 0 else err / (scale or 1.0)


def compare(torch, run, model, x, y, loss_fn, optimizer, iterations, outputs=()) -> float:
    """PyTorch's own training loop from the generator state `run` started from; the largest
    relative error over the loss, the outputs of the named modules, the gradients and the new
    parameters, every iteration."""
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(name, out.detach().clone()))
             for name, m in model.named_modules() if name in outputs]
    worst = {}

    def note(what, err):
        worst[what] = max(worst.get(what, 0.0), err)

    try:
        for k in range(1, iterations + 1):
            model.zero_grad()  # each iteration's own gradients (also of parameters no optimizer holds)
            loss = loss_fn(model(x), y)
            loss.backward()
            note("loss", rel(run["loss", k], loss.detach()))
            for name in outputs:
                note(f"forward {name}", rel(run[run.tape.meta["modules"][name], k], seen[name]))
            for name, p in model.named_parameters():
                if p.grad is not None:
                    note(f"d/d{name}", rel(run[f"dloss/d{name}", k], p.grad))
            if optimizer is not None:
                optimizer.step()
            else:
                with torch.no_grad():
                    for p in model.parameters():
                        p -= 0.01 * p.grad
            for name, p in model.named_parameters():  # a parameter no optimizer holds stays as it was
                traced = run[name, k] if any(t.name == name and t.iteration == k for t in run.tape.tensors) else run[name, 0]
                note(f"updated {name}", rel(traced, p.detach()))
    finally:
        for h in hooks:
            h.remove()
    return worst


def traced_and_compared(torch, make, iterations=3, outputs=()):
    """make() → (model, x, y, loss_fn, optimizer); traced, then trained by PyTorch from the same state."""
    from tracer import api

    torch.manual_seed(0)
    model, x, y, loss_fn, optimizer = make()
    state = torch.get_rng_state()
    run = api.from_torch(model, x, y, loss_fn, optimizer, iterations)
    torch.set_rng_state(state)
    worst = compare(torch, run, model, x, y, loss_fn, optimizer, iterations, outputs)
    return run, worst


# --- the table of modules -----------------------------------------------------------------------

def mlp(torch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 2)).double()
    x, y = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    return model, x, y, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)


def autoencoder(torch):
    nn = torch.nn
    model = nn.Sequential(nn.Linear(8, 3), nn.LeakyReLU(0.2), nn.Linear(3, 8), nn.Sigmoid()).double()
    x = torch.rand(4, 8, dtype=torch.float64)
    return model, x, x, nn.BCELoss(), torch.optim.Adam(model.parameters(), lr=0.01)


def vae(torch):
    """The shipped example's model (on 16 pixels, to stay small), with AdamW."""
    import runpy

    from tracer.models.pytorch import module_path

    ns = runpy.run_path(module_path(None))
    model = ns["VAE"](pixels=16, hidden=4, latent=2).double()
    x = torch.rand(2, 16, dtype=torch.float64)
    return model, x, x, ns["loss_fn"], torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.1)


def attention(torch):
    """One block: embedding + positions, one head (q, k, v), softmax, a residual, LayerNorm, a GELU
    feed-forward, next-character logits, cross-entropy on class ids."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, vocab=5, d=4, T=6):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(0.1 * torch.randn(T, d))
            self.q, self.k, self.v = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
            self.ln = nn.LayerNorm(d)
            self.ffn = nn.Sequential(nn.Linear(d, 8), nn.GELU(), nn.Linear(8, d))
            self.out = nn.Linear(d, vocab)
            self.d = d

        def forward(self, ids):
            h = self.emb(ids) + self.pos
            scores = self.q(h) @ self.k(h).T / math.sqrt(self.d)
            a = F.softmax(scores, dim=-1) @ self.v(h)
            h = self.ln(h + a)
            h = h + self.ffn(h)
            return self.out(h)

    model = Block().double()
    ids = torch.tensor([0, 1, 2, 3, 1, 4])
    targets = torch.tensor([1, 2, 3, 1, 4, 0])
    return model, ids, targets, nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.05)


def rnn(torch):
    """A char-level RNN written with nn.Linear cells, unrolled over 4 steps: h_t = tanh(W x_t + U h_{t−1})."""
    nn, F = torch.nn, torch.nn.functional

    class CharRNN(nn.Module):
        def __init__(self, vocab=4, hidden=3):
            super().__init__()
            self.ih, self.hh, self.out = nn.Linear(vocab, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, vocab)
            self.hidden = hidden

        def forward(self, x):
            h = torch.zeros(self.hidden, dtype=x.dtype)
            states = []
            for t in range(x.shape[0]):
                h = torch.tanh(self.ih(x[t]) + self.hh(h))
                states.append(h)
            return F.log_softmax(self.out(torch.stack(states)), dim=-1)

    model = CharRNN().double()
    text = [0, 1, 2, 3, 0]
    x = F.one_hot(torch.tensor(text[:-1]), 4).double()
    return model, x, torch.tensor(text[1:]), nn.NLLLoss(), torch.optim.SGD(model.parameters(), lr=0.5)


def recurrent(torch, kind):
    """A char-level model with nn.RNN or nn.LSTM on one sequence, its states through nn.Linear to
    next-character scores, CrossEntropyLoss."""
    nn = torch.nn

    class Char(nn.Module):
        def __init__(self, vocab=4, hidden=3):
            super().__init__()
            self.emb = nn.Embedding(vocab, 3)
            self.rnn = getattr(nn, kind)(3, hidden)
            self.out = nn.Linear(hidden, vocab)

        def forward(self, ids):
            states, _ = self.rnn(self.emb(ids))
            return self.out(states)

    text = torch.tensor([0, 1, 2, 3, 1, 0])
    model = Char().double()
    return model, text[:-1], text[1:], nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=0.05)


def generator_and_discriminator(torch):
    nn = torch.nn
    G = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3), nn.Tanh()).double()
    D = nn.Sequential(nn.Linear(3, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1)).double()
    return G, D


def gan_d(torch):
    """The discriminator's step: real samples (label 1) and the generator's (label 0), BCEWithLogits."""
    G, D = generator_and_discriminator(torch)
    real = torch.rand(3, 3, dtype=torch.float64) * 2 - 1
    with torch.no_grad():
        fake = G(torch.randn(3, 2, dtype=torch.float64))
    x = torch.cat([real, fake])
    y = torch.cat([torch.ones(3, 1), torch.zeros(3, 1)]).double()
    return D, x, y, torch.nn.BCEWithLogitsLoss(), torch.optim.SGD(D.parameters(), lr=0.1)


def gan_g(torch):
    """The generator's step through D: only G's parameters in the optimizer, the label 1 for its samples."""
    G, D = generator_and_discriminator(torch)
    model = torch.nn.Sequential(G, D)
    z = torch.randn(4, 2, dtype=torch.float64)
    return model, z, torch.ones(4, 1, dtype=torch.float64), torch.nn.BCEWithLogitsLoss(), \
        torch.optim.Adam(G.parameters(), lr=0.01, betas=(0.5, 0.999))


TABLE = {  # name: (maker, iterations, module outputs compared)
    "mlp": (mlp, 3, ("0", "1", "2", "3", "4")),
    "autoencoder": (autoencoder, 3, ("0", "1", "2", "3")),
    "vae": (vae, 3, ("encoder.0", "mu", "logvar", "decoder.3")),
    "attention": (attention, 3, ("emb", "q", "k", "v", "ln", "ffn.1", "out")),
    "rnn": (rnn, 2, ("out",)),
    "nn.RNN": (lambda torch: recurrent(torch, "RNN"), 2, ("emb", "out")),
    "nn.LSTM": (lambda torch: recurrent(torch, "LSTM"), 2, ("emb", "out")),
    "gan-d": (gan_d, 2, ("0", "1", "2")),
    "gan-g": (gan_g, 2, ("0.1", "0.3", "1.2")),
}


@pytest.mark.parametrize("name", TABLE)
def test_every_number_equals_pytorchs(T, name):
    make, iterations, outputs = TABLE[name]
    run, worst = traced_and_compared(T, lambda: make(T), iterations, outputs)
    assert worst and max(worst.values()) < TOL, {k: v for k, v in worst.items() if v >= TOL}
    assert {f"forward {o}" for o in outputs} <= set(worst)  # every named output was compared
    print(f"{name}: largest relative error {max(worst.values()):.1e}")


def test_the_comparison_can_fail(T):
    """Guard: against PyTorch's loop with a learning rate 1e-8 larger (relative), the trace differs
    by more than the tolerance."""
    from tracer import api

    T.manual_seed(0)
    model, x, y, loss_fn, optimizer = mlp(T)
    run = api.from_torch(model, x, y, loss_fn, optimizer, 2)
    optimizer.param_groups[0]["lr"] = 0.1 * (1 + 1e-8)
    worst = compare(T, run, model, x, y, loss_fn, optimizer, 2)
    assert max(worst.values()) > TOL


def test_the_other_losses_and_options(T):
    """CrossEntropyLoss with target probabilities, MSELoss and BCEWithLogitsLoss summed, the exact
    GELU and its tanh form, torch.log, powers and sqrt, a column of a matrix, eval-mode Dropout,
    SGD with weight decay and no optimizer at all."""
    nn, F = T.nn, T.nn.functional

    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 3)
            self.drop = nn.Dropout(0.5)

        def forward(self, x):
            h = F.gelu(self.a(x)) + F.gelu(self.a(x), approximate="tanh")
            h = self.drop(h) * T.sqrt(h.pow(2) + 1) - T.log(x[:, 0:1].exp() + 2)
            return self.b(h)

    cases = [
        (nn.CrossEntropyLoss(), lambda: T.softmax(T.randn(5, 3, dtype=T.float64), dim=1), None),
        (nn.MSELoss(reduction="sum"), lambda: T.randn(5, 3, dtype=T.float64), "wd"),
        (nn.BCEWithLogitsLoss(reduction="sum"), lambda: T.rand(5, 3, dtype=T.float64).round(), None),
        (lambda out, y: F.nll_loss(F.log_softmax(out, dim=-1), y, reduction="sum"), lambda: T.tensor([0, 2, 1, 1, 0]), "none"),
    ]
    for loss_fn, target, opt in cases:
        T.manual_seed(1)
        model = Odd().double().eval()
        x, y = T.randn(5, 3, dtype=T.float64), target()
        optimizer = (None if opt == "none" else
                     T.optim.SGD(model.parameters(), lr=0.05, weight_decay=0.01 if opt == "wd" else 0))
        from tracer import api

        state = T.get_rng_state()
        run = api.from_torch(model, x, y, loss_fn, optimizer, 2)
        T.set_rng_state(state)
        worst = compare(T, run, model, x, y, loss_fn, optimizer, 2, ("a", "b"))
        assert max(worst.values()) < TOL, (loss_fn, worst)


# --- the command, on a file --------------------------------------------------------------------

def module_file(tmp_path, body: str, name="my_model.py"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), "utf-8")
    return path


MLP_FILE = """\
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1)).double()
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    data = (x, torch.tensor([[0.0], [1.0], [1.0], [0.0]], dtype=torch.float64))
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    iterations = 3
"""


def test_the_command_traces_a_file_and_the_seed_sets_the_weights(T, tmp_path, run_main):
    path = module_file(tmp_path, MLP_FILE)
    out = tmp_path / "mine.json"
    code, stdout, err = run_main("run", "torch", "--module", path, "-o", out)
    assert code == 0, err
    assert "3 iterations" in stdout and out.stat().st_size > 0
    from tracer import api

    a, b = api.run("torch", module=str(path)), api.run("torch", module=str(path), seed=1)
    assert not np.array_equal(a["0.weight", 0], b["0.weight", 0])
    T.manual_seed(0)
    import runpy

    ns = runpy.run_path(str(path))  # what the file makes after torch.manual_seed(0): the same weights
    assert np.array_equal(a["0.weight", 0], ns["model"][0].weight.detach().numpy())


def test_names_come_from_the_code(T):
    """Module outputs by their attribute path, values by the variable a line assigns (h, h_2 …
    in a loop), parameters by their qualified names with readable symbols."""
    from tracer import api
    from tracer.render.template import Template

    run = api.run("torch")
    names = {t.name for t in run.tape.tensors}
    assert {"encoder.0.weight", "encoder.0", "h", "mu", "logvar", "eps", "z", "decoder.3", "recon", "kl", "loss",
            "dloss/dencoder.0.weight"} <= names, sorted(names)
    tpl = Template.of(run.tape)
    assert tpl.symbol("encoder.0.weight") == "W[encoder.0]" and tpl.symbol("mu.bias") == "b[mu]"
    assert tpl.symbol("dloss/dencoder.0.weight") == "∂L/∂W[encoder.0]"
    assert "`+`, line 23 of `torch_vae.py`: `z = mu + torch.exp(0.5 * logvar) * eps`" in tpl.describe(
        next(t for t in run.tape.tensors if t.name == "z"))
    T.manual_seed(0)
    model, x, y, loss_fn, optimizer = rnn(T)
    names = {t.name for t in api.from_torch(model, x, y, loss_fn, optimizer, 1).tape.tensors}
    assert {"h", "h_2", "h_3", "h_4"} <= names


def test_the_draws_are_pytorchs(T):
    """ε of the VAE is what torch.randn_like draws next: recorded as a constant of the iteration."""
    from tracer import api

    run = api.run("torch", seed=3)
    eps = [t for t in run.tape.tensors if t.name == "eps"]
    assert len(eps) == 4 and all(t.op is None and t.attrs["role"] == "draw" for t in eps)
    assert not np.array_equal(eps[0].value, eps[1].value)


# --- refusals: one line each, before any work -----------------------------------------------------

BAD = {
    "an op tracer lacks": ("""\
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 2)

            def forward(self, x):
                return torch.cumsum(self.lin(x), dim=1)

        model = M().double()
        data = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
        loss_fn = nn.MSELoss()
        """, r"torch\.cumsum at line 10 of my_model\.py is not supported"),
    "dropout in train mode": ("""\
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.1)).double()
        data = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
        loss_fn = nn.MSELoss()
        """, r"nn\.Dropout .* is not supported: Dropout in train mode .* model\.eval\(\)"),
    "a 3-D tensor": ("""\
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 4)

            def forward(self, x):
                return self.lin(x).view(2, 2, 2, 2).sum()

        model = M().double()
        data = (torch.randn(4, 3, dtype=torch.float64), torch.tensor(0.0, dtype=torch.float64))
        loss_fn = lambda out, y: out - y
        """, r"\.view\(\) at line 10 of my_model\.py is not supported: gives a 4-D tensor"),
    "an unsupported module": ("""\
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).double()
        data = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
        loss_fn = nn.MSELoss()
        """, r"nn\.BatchNorm1d .* is not supported"),
    "control flow on values": ("""\
        import torch
        from torch import nn

        class M(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(3, 2)

            def forward(self, x):
                h = self.lin(x)
                return h if h.sum() > 0 else -h

        model = M().double()
        data = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
        loss_fn = nn.MSELoss()
        """, r"torch\.fx cannot trace my_model\.py"),
    "a missing name": ("""\
        import torch
        model = torch.nn.Linear(2, 2)
        """, r"my_model\.py defines no `data`"),
    "an error in the file": ("""\
        import torch
        model = torch.nn.Linear(2, 2)
        data = (torch.randn(3, 2), torch.randn(3, 2))
        loss_fn = torch.nn.MSELoss(reduction="none")
        x = 1 / 0
        """, r"my_model\.py line 5: ZeroDivisionError"),
    "a loss that is not a number": ("""\
        import torch
        model = torch.nn.Linear(2, 2).double()
        data = (torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64))
        loss_fn = torch.nn.MSELoss(reduction="none")
        """, r"nn\.MSELoss .* is not supported: reduction='mean' or 'sum'"),
    "an optimizer option": ("""\
        import torch
        model = torch.nn.Linear(2, 2).double()
        data = (torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64))
        loss_fn = torch.nn.MSELoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
        """, r"SGD's nesterov is not supported"),
}


@pytest.mark.parametrize("case", BAD)
def test_refused_in_one_line(T, tmp_path, refused, case):
    body, message = BAD[case]
    path = module_file(tmp_path, body)
    import re

    line = refused("run", "torch", "--module", path, "-o", tmp_path / "out.xlsx")
    assert re.search(message, line), line
    assert not (tmp_path / "out.xlsx").exists()
    if case in ("an op tracer lacks", "dropout in train mode", "a 3-D tensor"):  # the page shows these
        assert line in PAGE.read_text("utf-8"), line


def test_a_missing_file_and_a_missing_pytorch(tmp_path, refused, monkeypatch):
    assert "module file not found" in refused("run", "torch", "--module", tmp_path / "nope.py")
    import builtins

    real = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    line = refused("run", "torch")
    assert 'pip install "tracer[torch]"' in line


def test_the_size_is_known_before_any_work(T, tmp_path, refused, monkeypatch):
    """A model too large for a workbook is refused from the captured shapes, before tracing."""
    from tracer.frontends import pytorch as front

    path = module_file(tmp_path, """\
        import torch
        from torch import nn
        model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 10)).double()
        data = (torch.randn(100, 1000, dtype=torch.float64), torch.randn(100, 10, dtype=torch.float64))
        loss_fn = nn.MSELoss()
        iterations = 10
        """)
    monkeypatch.setattr(front.Program, "trace", lambda *a: pytest.fail("traced before the size check"))
    assert "too large" in refused("run", "torch", "--module", path)


# --- the shipped example, as a workbook ---------------------------------------------------------

@pytest.mark.parametrize("name", ["attention", "nn.LSTM", "gan-g"])
def test_other_workbooks_verify(T, name, tmp_path, engine):
    """Layouts the example lacks (a transposed key, a log-softmax, LayerNorm, the exact GELU, an
    LSTM's slices and gates, Adam) recalculated in each engine."""
    from tracer import api
    from tracer.checks import verify

    T.manual_seed(0)
    make, _, _ = TABLE[name]
    run = api.from_torch(*make(T), iterations=1)
    path = tmp_path / "run.xlsx"
    run.save(path)
    report = verify.verify_workbook(path, engine=engine)
    assert report.ok, report.format()


def test_the_example_verifies_in_both_engines(T, default_workbook, module_engine):
    from tracer.checks import verify

    report = verify.verify_workbook(default_workbook("torch"), engine=module_engine)
    assert report.ok and report.n_formulas > 30_000, report.format()


def test_the_page_lists_what_is_supported_and_shows_the_example(T):
    from tracer.frontends import pytorch as front
    from tracer.models.pytorch import module_path

    page = PAGE.read_text("utf-8")
    for kind, names in front.supported().items():
        for name in names:
            assert f"`{name}`" in page, (kind, name)
    assert f"```python\n{Path(module_path(None)).read_text('utf-8')}```" in page
