"""A student's VAE built by hand, as the team this project started from built theirs: a 4 × 4 digit,
2 hidden units, 2 latent units, one SGD step, every number worked out on their own (numpy here,
written out from the equations, nothing of tracer) and typed into a workbook of their own layout
(openpyxl: their own sheet names, their own places, some vectors down a column, two defined names).

    make(path, mistake=None) -> the map (TOML text) of the workbook written to `path`

`mistake`: (tensor, i, j, value) typed instead of the right number; every number after it is
worked out from the student's numbers, as their spreadsheet would (so the mistake carries).
"""

from __future__ import annotations

import numpy as np
from openpyxl import Workbook
from openpyxl.utils import get_column_letter
from openpyxl.workbook.defined_name import DefinedName

DIGIT = np.array([[0.0, 0.9, 0.9, 0.1],  # a 7, drawn by hand on 4 × 4 pixels
                  [0.0, 0.0, 0.8, 0.2],
                  [0.0, 0.3, 0.7, 0.0],
                  [0.0, 0.6, 0.1, 0.0]]).reshape(1, 16)
LR = 0.1
OPTIONS = ("--size", "4", "--hidden", "2", "--iterations", "1")  # of `tracer map` and `tracer check`


def numbers(mistake=None) -> dict[str, np.ndarray]:
    """Every number of the student's one step, by tracer's names (forward, ELBO, backward, SGD)."""
    rng = np.random.default_rng(2024)  # the student's own initial weights and draw
    p = {"W1": rng.normal(0, 0.25, (16, 2)), "b1": np.array([[0.05, -0.02]]),
         "W_mu": rng.normal(0, 0.7, (2, 2)), "b_mu": np.zeros((1, 2)),
         "W_logvar": rng.normal(0, 0.7, (2, 2)), "b_logvar": np.zeros((1, 2)),
         "W3": rng.normal(0, 0.7, (2, 2)), "b3": np.array([[0.5, 0.5]]),
         "W4": rng.normal(0, 0.7, (2, 16)), "b4": np.zeros((1, 16))}
    n = {"x": DIGIT, "eps": np.array([[0.3, -1.1]]), "lr": np.array([[LR]]), **p}

    def put(name, value):
        value = np.array(value, dtype=float).reshape(np.shape(value) or (1, 1))
        if mistake and mistake[0] == name:
            value[mistake[1], mistake[2]] = mistake[3]
        n[name] = value
        return value

    x = n["x"]
    h_pre = put("h_pre", x @ p["W1"] + p["b1"])
    h = put("h", np.maximum(h_pre, 0))
    mu = put("mu", h @ p["W_mu"] + p["b_mu"])
    logvar = put("logvar", h @ p["W_logvar"] + p["b_logvar"])
    sigma = put("sigma", np.exp(logvar / 2))
    z = put("z", mu + sigma * n["eps"])
    h_dec_pre = put("h_dec_pre", z @ p["W3"] + p["b3"])
    h_dec = put("h_dec", np.maximum(h_dec_pre, 0))
    x_logit = put("x_logit", h_dec @ p["W4"] + p["b4"])
    x_hat = put("x_hat", 1 / (1 + np.exp(-x_logit)))
    recon = put("recon", -np.sum(x * np.log(x_hat) + (1 - x) * np.log(1 - x_hat)))
    kl = put("kl", -0.5 * np.sum(1 + logvar - mu ** 2 - np.exp(logvar)))
    put("loss", recon + kl)
    g_logit = put("dL/dx_logit", x_hat - x)  # the sigmoid and the cross-entropy together
    g = {"W4": h_dec.T @ g_logit, "b4": g_logit}
    g_hdec = put("dL/dh_dec", g_logit @ p["W4"].T)
    g_hdec_pre = put("dL/dh_dec_pre", g_hdec * (h_dec_pre > 0))
    g |= {"W3": z.T @ g_hdec_pre, "b3": g_hdec_pre}
    g_z = put("dL/dz", g_hdec_pre @ p["W3"].T)
    g_mu = put("dL/dmu", g_z + mu)
    g_logvar = put("dL/dlogvar", g_z * n["eps"] * sigma / 2 + (np.exp(logvar) - 1) / 2)
    g |= {"W_mu": h.T @ g_mu, "b_mu": g_mu, "W_logvar": h.T @ g_logvar, "b_logvar": g_logvar}
    g_h = put("dL/dh", g_mu @ p["W_mu"].T + g_logvar @ p["W_logvar"].T)
    g_h_pre = put("dL/dh_pre", g_h * (h_pre > 0))
    g |= {"W1": x.T @ g_h_pre, "b1": g_h_pre}
    for name in p:
        g[name] = put("dL/d" + name, g[name])
    new = {name: put("new " + name, p[name] - LR * g[name]) for name in p}
    return n | {f"new {k}": v for k, v in new.items()}


def make(path, mistake=None) -> str:
    """Write the student's workbook; return its map."""
    n = numbers(mistake)
    wb = Workbook()
    given, step = wb.active, wb.create_sheet("Paso 1")
    given.title = "Pesos y datos"
    places = {"inputs": {}, "iteration.1": {}}

    def write(ws, name, row, col, table, down=False, key=None):
        """The tensor at (row, col), as it is or (down) each row down a column."""
        value = n[name].T if down else n[name]
        for i, values in enumerate(value):
            for j, v in enumerate(values):
                ws.cell(row=row + i, column=col + j, value=float(v))
        ws.cell(row=row, column=col - 1, value=name)  # the student's label, left of the numbers
        last = f"{get_column_letter(col + value.shape[1] - 1)}{row + value.shape[0] - 1}"
        where = f"'{ws.title}'!{get_column_letter(col)}{row}" + (f":{last}" if value.size > 1 else "")
        if table:
            places[table][key or name.removeprefix("new ")] = where
        return where

    write(given, "x", 2, 2, "inputs", down=True)  # the digit down column B
    row = 2
    for name in ("W1", "b1", "W_mu", "b_mu", "W_logvar", "b_logvar", "W3", "b3", "W4", "b4"):
        write(given, name, row, 5, "inputs")
        row += n[name].shape[0] + 1
    lr = write(given, "lr", 2, 24, None)
    eps = write(step, "eps", 2, 3, None)
    wb.defined_names["lr_0"] = DefinedName("lr_0", attr_text=_absolute(lr))  # by name, not in the map
    wb.defined_names["eps_1"] = DefinedName("eps_1", attr_text=_absolute(eps))
    row = 4
    for name in ("h_pre", "h", "mu", "logvar", "sigma", "z", "h_dec_pre", "h_dec", "x_logit", "x_hat", "recon",
                 "kl", "loss", "dL/dx_logit", "dL/dW4", "dL/db4", "dL/dh_dec", "dL/dh_dec_pre", "dL/dW3", "dL/db3",
                 "dL/dz", "dL/dmu", "dL/dlogvar", "dL/dW_mu", "dL/db_mu", "dL/dW_logvar", "dL/db_logvar", "dL/dh",
                 "dL/dh_pre", "dL/dW1", "dL/db1", *(f"new {p}" for p in ("W1", "b1", "W_mu", "b_mu", "W_logvar",
                                                                       "b_logvar", "W3", "b3", "W4", "b4"))):
        down = n[name].shape == (1, 16)  # the pixels' rows down a column, as a student may
        write(step, name, row, 3, "iteration.1", down=down)
        row += (16 if down else n[name].shape[0]) + 1
    wb.save(path)
    lines = []
    for table, entries in places.items():
        lines.append(f"[{table}]")
        lines += [f'"{key}" = "{where}"' for key, where in entries.items()]
    return "\n".join(lines) + "\n"


def _absolute(where: str) -> str:
    sheet, _, cells = where.rpartition("!")
    return sheet + "!" + ":".join("$" + "".join(c for c in part if c.isalpha()) + "$" + "".join(c for c in part if c.isdigit())
                                  for part in cells.split(":"))
