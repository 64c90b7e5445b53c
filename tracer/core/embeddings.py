"""Embeddings: a token's vector looked up by its id, the sinusoidal positional encoding, and, after
training, the cosine similarity of every pair of rows and each row's nearest neighbours.

    embed         E (V, d), ids (T, 1) → (T, d)    INDEX(E, id + 1, j + 1)
    embed_grad    the scatter-add back into E      SUMIF(ids, v, column j of g)
    pos_encoding  pos (T, 1), dim (1, d) → (T, d)  SIN / COS of a position and a dimension cell
    cosine        E (V, d) → (V, V)                SUMPRODUCT / SQRT(SUMPRODUCT · SUMPRODUCT)
    nearest       cos (V, V) → (V, k)              MATCH(LARGE(row, n + 2), row, 0) − 1
    mask_positions  u (T, 1), rate → m (T, 1)      IF(u<rate,1,IF(u=MIN(u),1,0)): 1 = masked
    mask_ids      ids, m, [MASK]'s id → (T, 1)     IF(m=1, [MASK]'s id, id)

Shapes: a sequence of T tokens is T rows, features are columns.  Where a choice depends on the
cell's position (sine or cosine) the op makes it when it writes the formula (no IF(MOD(…))).
"""

from __future__ import annotations

import numpy as np

from tracer.core.op import Elementwise, Op, as_range, dot, no_grad, only, record

PE_BASE = 10000.0


# --- lookup by id -----------------------------------------------------------------------------------

def _ids(ids, vocab):
    """The (T, 1) float ids as integer indices, checked."""
    if ids.ndim != 2 or ids.shape[1] != 1:
        raise ValueError(f"token ids must be a (T, 1) column, got {ids.shape}")
    idx = ids[:, 0].astype(np.int64)
    if np.any(idx != ids[:, 0]) or np.any(idx < 0) or np.any(idx >= vocab):
        raise ValueError(f"token ids must be integers in 0 … {vocab - 1}")
    return idx


class Embed(Op):
    """Lookup by id: E (V, d) the embedding matrix, ids (T, 1) token ids (a constant) → (T, d),
    out[i, j] = E[ids_i, j].  Cell: INDEX(E, id_i + 1, j + 1) (INDEX counts from 1).
    The same as X·E with X the (T, V) one-hot rows (linalg.MATMUL), without the zeros."""

    name = "embed"

    def forward(self, E, ids, **attrs):
        return E[_ids(ids, E.shape[0])]

    def formula(self, c, i, j):
        where = (f"{j + 1},{c.at(1, i, 0)}+1" if c.row(0, 0)[1] else f"{c.at(1, i, 0)}+1,{j + 1}")
        return f"INDEX({as_range(c.all(0))},{where})"

    def backward(self, out, g, wanted):
        E, ids = out.inputs
        return only(wanted, lambda: record(EMBED_GRAD, ids, g, vocab=E.shape[0]),
                      no_grad(self.name, "the token ids"))


class EmbedGrad(Op):
    """Scatter-add: ids (T, 1), g (T, d) → dE (V, d), dE[v, j] = Σ_{i: ids_i = v} g[i, j]
    (rows of tokens that do not occur are 0).  V comes as the attribute `vocab`.
    Cell: SUMIF(ids, v, column j of g): the spreadsheet's own "sum where the id is v", shorter
    and plainer than SUMPRODUCT((ids=v)*g_col)."""

    name = "embed_grad"

    def forward(self, ids, g, vocab=None, **attrs):
        if vocab is None:
            raise ValueError("embed_grad needs the vocabulary size: vocab=V")
        out = np.zeros((int(vocab), g.shape[1]), dtype=g.dtype)
        np.add.at(out, _ids(ids, int(vocab)), g)
        return out

    def formula(self, c, i, j):
        col, down, n = c.col(1, j)
        if n > 1 and down != c.col(0, 0)[1]:
            raise ValueError("embed_grad: the ids and the gradient's columns must run the same way")
        return f"SUMIF({as_range(c.all(0))},{i},{as_range(col)})"


EMBED, EMBED_GRAD = Embed(), EmbedGrad()



# --- the sinusoidal positional encoding ------------------------------------------------------

class PositionalEncoding(Op):
    """PE[p, 2k] = sin(p / 10000^(2k/d)), PE[p, 2k+1] = cos(p / 10000^(2k/d)):
    pos (T, 1) the positions 0 … T−1, dim (1, d) the dimension indices 0 … d−1 (constants) → (T, d).
    Cell (i, j): SIN(pos_i/10000^(dim_j/d)) for even j, COS(pos_i/10000^((dim_j−1)/d)) for odd j.
    Each cell is a formula of a position cell and a dimension cell, d and the base 10000 are
    literals; the op picks SIN or COS by the column when it writes the formula (no IF(MOD(...))).
    Not learned: no gradient rule."""

    name = "pos_encoding"

    def forward(self, pos, dim, **attrs):
        d = dim.shape[1]
        even = (np.arange(d) % 2 == 0)[None, :]
        angle = pos / PE_BASE ** (np.where(even, dim, dim - 1) / d)
        return np.where(even, np.sin(angle), np.cos(angle))

    def formula(self, c, i, j):
        p, k, d = c.at(0, i, 0), c.at(1, 0, j), c.shape(1)[1]
        return f"SIN({p}/10000^({k}/{d}))" if j % 2 == 0 else f"COS({p}/10000^(({k}-1)/{d}))"


POS_ENCODING = PositionalEncoding()



# --- after training: cosine similarity and nearest neighbours ---------------------------------

class Cosine(Op):
    """E (V, d) → (V, V): cos[i, j] = E_i · E_j / (|E_i| |E_j|), the cosine similarity of rows.
    Cell: SUMPRODUCT(row i, row j) / SQRT(SUMPRODUCT(row i, row i) · SUMPRODUCT(row j, row j))."""

    name = "cosine"

    def forward(self, E, **attrs):
        norms = np.sqrt(np.sum(E * E, axis=1, keepdims=True))
        return (E @ E.T) / (norms * norms.T)

    def formula(self, c, i, j):
        ri, rj = c.row(0, i), c.row(0, j)
        return f"{dot(ri, rj)}/SQRT({dot(ri, ri)}*{dot(rj, rj)})"


class Nearest(Op):
    """cos (V, V) → (V, k): the ids of each row's k most similar other rows, nearest first
    (attribute k).  Cell (i, n): MATCH(LARGE(row i, n + 2), row i, 0) − 1: LARGE(…, 1) is the row
    itself (cosine 1), MATCH finds the column of the value, ids count from 0.  Ties: the first
    column, like numpy's stable sort."""

    name = "nearest"
    integer = True
    token_ids = True

    def forward(self, cos, k=3, **attrs):
        order = np.argsort(-cos, axis=1, kind="stable")
        return order[:, 1:1 + int(k)].astype(np.float64)

    def formula(self, c, i, j):
        row = as_range(c.row(0, i)[0])
        return f"MATCH(LARGE({row},{j + 2}),{row},0)-1"


COSINE, NEAREST = Cosine(), Nearest()


# --- a masked language model's inputs: which positions are masked, and the masked ids -------------

class MaskPositions(Op):
    """m_i = 1 where the draw u_i < rate, and at the smallest draw (so at least one position is
    masked), else 0: u (T, 1) uniform draws in [0, 1) (recorded), rate (1, 1) → (T, 1).
    Cell: IF(u_i<rate,1,IF(u_i=MIN(u),1,0)).  Data, not learned: no gradient rule."""

    name = "mask_positions"
    integer = True  # 0 or 1

    def forward(self, u, rate, **attrs):
        return ((u < rate) | (u == u.min())).astype(np.float64)

    def formula(self, c, i, j):
        u = c.at(0, i, 0)
        return f"IF({u}<{c.at(1, 0, 0)},1,IF({u}=MIN({c.all(0)}),1,0))"


# the inputs a masked model reads: [MASK]'s id where m is 1, the token's own id elsewhere
MASK_IDS = Elementwise("mask_ids", lambda ids, m, k: np.where(m == 1, k, ids), "IF({1}=1,{2},{0})")
MASK_IDS.integer = MASK_IDS.token_ids = True
MASK_POSITIONS = MaskPositions()


OPS = {op.name: op for op in (EMBED, EMBED_GRAD, POS_ENCODING, COSINE, NEAREST, MASK_POSITIONS, MASK_IDS)}


# --- what a model calls -------------------------------------------------------------------------

def token_ids(tape, ids, name="ids", **attrs):
    """A constant (T, 1) column of token ids (for embed)."""
    return tape.constant(name, np.asarray(ids, dtype=np.float64).reshape(-1, 1),
                         **({"role": "data", "integer": True, "decode": True} | attrs))


def embed(E, ids, name=None):
    """Row i: the embedding row of token ids[i] (E (V, d), ids (T, 1))."""
    return record(EMBED, E, ids, name=name)


def positional_encoding(tape, T, d, name="PE", pos_name="pos", dim_name="dim"):
    """Record the constants pos (T, 1) = 0 … T−1 and dim (1, d) = 0 … d−1, and PE (T, d)."""
    pos = tape.constant(pos_name, np.arange(T, dtype=np.float64).reshape(T, 1), role="data", integer=True)
    return sinusoidal(pos, dimensions(tape, d, dim_name), name=name)


def dimensions(tape, d, name="dim"):
    """The constant dim (1, d) = 0 … d−1: the columns of a sinusoidal encoding."""
    return tape.constant(name, np.arange(d, dtype=np.float64).reshape(1, d), role="data", integer=True)


def sinusoidal(pos, dim, name=None):
    """The sinusoidal encoding (T, d) of the positions (or diffusion steps) pos (T, 1) over the
    columns dim (1, d)."""
    return record(POS_ENCODING, pos, dim, name=name)


def cosine(E, name=None):
    return record(COSINE, E, name=name)


def nearest(cos, k, name=None):
    return record(NEAREST, cos, name=name, k=k)


def mask_positions(u, rate, name=None):
    return record(MASK_POSITIONS, u, rate, name=name)


def mask_ids(ids, m, mask_id, name=None):
    """The ids a masked model reads (shown with their tokens)."""
    return record(MASK_IDS, ids, m, mask_id, name=name, decode=True)
