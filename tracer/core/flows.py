"""Normalizing flows (RealNVP, Dinh, Sohl-Dickstein and Bengio 2017): the change of variables.

    log_normal        z (N, k) → (N, 1): log N(z; 0, I) of each row, in two blocks: the terms
                      −½ z² − ½ ln(2π), one per element (`<name>_terms`), then each row's SUM
    log_normal_grad   z, g → −z ⊙ g                                the gradient of log N
    coupling_inverse  y, t, s → (y − t) ⊙ exp(−s)                  an affine coupling undone

A coupling's forward pass, y = x ⊙ exp(s) + t, is activations' exp and linalg's a + b ⊙ c; its
log-determinant is s itself.  The inverse runs after training (sampling), so it has no gradient.
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import Composite, Elementwise, only, record, total

HALF_LN_2PI = 0.5 * np.log(2 * np.pi)

LOG_NORMAL_TERMS = Elementwise(  # −0.5·z² − 0.5·ln(2π): a literal −0.5, so Excel squares z, not −z
    "log_normal_terms", lambda z: -0.5 * z ** 2 - HALF_LN_2PI, "-0.5*{0}^2-0.5*LN(2*PI())"
)
LOG_NORMAL_GRAD = Elementwise("log_normal_grad", lambda z, g: -z * g, "-{0}*{1}")


class LogNormal(Composite):
    """log N(z; 0, I) of each row: z (N, k) → (N, 1), Σ_j (−½ z_ij² − ½ ln 2π), in two blocks: the
    terms (`<name>_terms`, one per element), then each row's SUM.  Gradient: −z ⊙ g."""

    name = "log_normal"
    steps = (("terms", LOG_NORMAL_TERMS, 0),)

    def finish(self, z, terms):
        return terms.sum(axis=1, keepdims=True)

    def formula(self, c, i, j):
        return total(c.span(1, i, 0, i, c.shape(1)[1] - 1))

    def grad(self, out, g, wanted, z):
        return only(wanted, lambda: record(LOG_NORMAL_GRAD, z, g))


COUPLING_INVERSE = Elementwise("coupling_inverse", lambda y, t, s: (y - t) * np.exp(-s), "({0}-{1})*EXP(-{2})")
LOG_NORMAL = LogNormal()

OPS = {op.name: op for op in (LOG_NORMAL_TERMS, LOG_NORMAL, LOG_NORMAL_GRAD, COUPLING_INVERSE)}


# --- what a model calls -------------------------------------------------------------------------

def log_normal(z, name=None):
    """log N(z; 0, I) of each row (N, 1), recorded as `<name>_terms` and their row sums."""
    return record(LOG_NORMAL, z, name=name)


def coupling_inverse(y, t, s, name=None):
    """x = (y − t) ⊙ exp(−s): the changed coordinate before the coupling."""
    return record(COUPLING_INVERSE, y, t, s, name=name)
