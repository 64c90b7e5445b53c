"""Two-dimensional data sets for a normalizing flow: seeded points, one per row (N × 2).

    moons      two interleaving half circles (the outer one's centre at (−0.5, −0.25), the inner
               one's at (0.5, 0.25), radius 1), each point's angle uniform on [0, π], plus
               N(0, 0.1²) noise on each coordinate; the first ⌈N/2⌉ points on the outer moon
    rings      two concentric circles of radius 0.75 and 1.75 around the origin, angles uniform on
               [0, 2π), plus N(0, 0.1²) noise; the first ⌈N/2⌉ points on the inner ring
    gaussians  four Gaussian clusters of standard deviation 0.2 centred at (±1, ±1), the points
               taking the clusters in turn

Each set is drawn from numpy's default_rng([seed, 3]), so the same seed gives the same points
and the model's own draws (initial parameters, samples) are not shifted by the data.
"""

from __future__ import annotations

import numpy as np

KINDS = ("moons", "rings", "gaussians")
NOISE = 0.1


def points(kind: str, n: int, seed: int) -> np.ndarray:
    """n points of the data set `kind` (one of KINDS), shape (n, 2)."""
    rng = np.random.default_rng([seed, 3])
    first = (n + 1) // 2
    if kind == "moons":
        angle = rng.uniform(0.0, np.pi, n)
        outer = np.stack([np.cos(angle) - 0.5, np.sin(angle) - 0.25], axis=1)
        inner = np.stack([0.5 - np.cos(angle), 0.25 - np.sin(angle)], axis=1)
        xy = np.where((np.arange(n) < first)[:, None], outer, inner)
        return xy + rng.normal(0.0, NOISE, (n, 2))
    if kind == "rings":
        angle = rng.uniform(0.0, 2 * np.pi, n)
        radius = np.where(np.arange(n) < first, 0.75, 1.75)
        return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1) + rng.normal(0.0, NOISE, (n, 2))
    if kind == "gaussians":
        centres = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
        return centres[np.arange(n) % 4] + rng.normal(0.0, 0.2, (n, 2))
    raise ValueError(f"unknown data set {kind!r}: choose one of {', '.join(KINDS)}")
