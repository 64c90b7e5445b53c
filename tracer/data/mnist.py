"""Read MNIST digits stored in the IDX format.

The package ships a small sample: the first 100 digits of the MNIST test set
and their labels (see ``tracer/data/README.md`` for credits and license).
Users may also point at their own IDX images file.

IDX format (big-endian throughout)::

    bytes 0-1   two zero bytes
    byte  2     type code of the data (see ``_IDX_TYPES``)
    byte  3     number of dimensions, n
    then n unsigned 32-bit sizes, one per dimension
    then the data, row-major, size[0] * ... * size[n-1] items

A file is gzipped or not; gzip is detected by its magic bytes, not its name.
Every problem with a file raises ``TracerError`` with a one-line message
that names the file.
"""

from __future__ import annotations

import gzip
import importlib.resources
import math
import operator
import os
import zlib
from typing import Union

import numpy as np

from tracer.errors import TracerError, read_bytes

#: Number of digits in the shipped sample.
SAMPLE_SIZE = 100

#: Image side in pixels; each digit is IMAGE_SIDE x IMAGE_SIDE.
IMAGE_SIDE = 28

SAMPLE_IMAGES = "mnist-test-first100-images-idx3-ubyte.gz"
SAMPLE_LABELS = "mnist-test-first100-labels-idx1-ubyte.gz"

# IDX type code -> big-endian numpy dtype and a short name for messages.
_IDX_TYPES = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}

_GZIP_MAGIC = b"\x1f\x8b"

PathArg = Union[str, "os.PathLike[str]"]


def sample_size() -> int:
    """Return the number of digits in the shipped sample (100)."""
    return SAMPLE_SIZE


def read_idx(path: PathArg) -> np.ndarray:
    """Read an IDX file, gzipped or not, and return its data.

    Args:
        path: the file. Also accepts an ``importlib.resources`` Traversable.

    Returns:
        An array whose shape is the file's dimensions, e.g. ``(N, 28, 28)``
        for MNIST images or ``(N,)`` for labels. The dtype follows the type
        code, in native byte order (``uint8`` for type 0x08).

    Raises:
        TracerError: the file is missing, unreadable, not IDX, truncated,
            has trailing bytes, or is a corrupt gzip file.
    """
    name = str(path)
    raw = read_bytes(path, name, "an MNIST")
    if raw[:2] == _GZIP_MAGIC:
        raw = _gunzip(raw, name)
    return _parse_idx(raw, name)


def load_images(path: PathArg | None = None) -> np.ndarray:
    """Load MNIST images.

    Args:
        path: an IDX images file; ``None`` means the shipped sample.

    Returns:
        A ``uint8`` array of shape ``(N, 28, 28)``, pixel values 0-255.

    Raises:
        TracerError: the file cannot be read, or is not a non-empty
            3-dimensional unsigned-byte IDX file of 28x28 images.
    """
    if path is None:
        source = _sample_file(SAMPLE_IMAGES)
        name = "the shipped MNIST sample"
    else:
        source = path
        name = str(path)
    images = read_idx(source)
    if images.ndim != 3:
        plural = "" if images.ndim == 1 else "s"
        raise TracerError(
            f"expected an IDX images file (3 dimensions) but {name} has "
            f"{images.ndim} dimension{plural}"
        )
    if images.dtype != np.uint8:
        raise TracerError(
            f"expected unsigned byte pixels (IDX type 0x08) in {name}, "
            f"found {images.dtype}"
        )
    if images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise TracerError(
            f"expected {IMAGE_SIDE}x{IMAGE_SIDE} images in {name}, "
            f"found {images.shape[1]}x{images.shape[2]}"
        )
    if images.shape[0] == 0:
        raise TracerError(f"no images in {name}")
    return images


def load_labels(path: PathArg | None = None) -> np.ndarray | None:
    """Load the labels that go with ``load_images(path)``.

    Args:
        path: ``None`` for the shipped sample. For a user's images file no
            labels are looked for and ``None`` is returned.

    Returns:
        A ``uint8`` array of shape ``(N,)`` with digits 0-9, or ``None``.
    """
    if path is not None:
        return None
    labels = read_idx(_sample_file(SAMPLE_LABELS))
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise TracerError(f"the shipped MNIST labels file is damaged: {SAMPLE_LABELS}")
    return labels


def load_digit(index: int, path: PathArg | None = None) -> tuple[np.ndarray, int | None]:
    """Load one digit as a row of pixel intensities.

    Args:
        index: position of the digit in the file, from 0.
        path: an IDX images file; ``None`` means the shipped sample.

    Returns:
        ``(pixels, label)``: ``pixels`` is a ``float64`` array of shape
        ``(1, 784)``, the image scaled to [0, 1] (value / 255), rows in
        order; ``label`` is the digit 0-9, or ``None`` if unknown.

    Raises:
        TracerError: the file cannot be loaded, or ``index`` is out of
            range (negative indices are out of range too).
    """
    return load_batch(index, 1, path)


def load_batch(index: int, n: int, path: PathArg | None = None,
               same_class: bool = True) -> tuple[np.ndarray, int | None]:
    """The digit at ``index`` and the next ``n - 1`` digits of the same class, as rows (with
    ``same_class=False``, the next ``n - 1`` digits whatever their class).

    Returns ``(pixels, label)`` with ``pixels`` of shape ``(n, 784)`` scaled to [0, 1] and the
    class (``None`` if unknown).  Without labels (a user's file), the next ``n - 1`` digits
    whatever their class.

    Raises:
        TracerError: the file cannot be loaded, ``index`` is out of range, or the file has
            fewer than ``n`` such digits from ``index`` on.
    """
    index = operator.index(index)
    images = load_images(path)
    count = images.shape[0]
    if not 0 <= index < count:
        where = "the sample" if path is None else str(path)
        raise TracerError(
            f"--digit {index} is out of range: {where} has {count} "
            f"digit{'' if count == 1 else 's'} (0-{count - 1})"
        )
    labels = load_labels(path)
    if labels is not None and labels.shape[0] != count:
        raise TracerError("the shipped MNIST sample has different numbers of images and labels")
    label = None if labels is None else int(labels[index])
    pool = [i for i in range(count) if label is None or not same_class or labels[i] == label]
    rows = [i for i in pool if i >= index][:n]
    if len(rows) < n:
        raise TracerError(_too_few(n, index, len(rows), pool, label if same_class else None,
                                   "the sample" if path is None else str(path)))
    pixels = images[rows].reshape(n, IMAGE_SIDE * IMAGE_SIDE).astype(np.float64) / 255.0
    return pixels, label


def starts_batch(n: int, path: PathArg | None = None) -> np.ndarray:
    """For every digit of the file, whether `load_batch(index, n, path)` finds its batch there: it
    and at least n − 1 later digits of its class (of any class without labels).  One read of the
    file for all of them (a class roster tries digit after digit)."""
    count = load_images(path).shape[0]
    labels = load_labels(path)
    if labels is None:
        return np.arange(count) + n <= count
    left = np.empty(count, dtype=int)  # the digits of each one's class from it on, itself included
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        left[rows] = len(rows) - np.arange(len(rows))
    return left >= n


# --- helpers ---------------------------------------------------------------


def _too_few(n: int, index: int, found: int, pool: list[int], label: int | None, where: str) -> str:
    """'--batch 4 is too large: only 1 digit of class 9 from --digit 99 on (the sample's digits of
    class 9: 7, 9, …, 99); --digit 87 or an earlier one of them gives 4'."""
    kind = f" of class {label}" if label is not None else ""
    text = f"--batch {n} is too large: only {found} digit{'' if found == 1 else 's'}{kind} from --digit {index} on"
    shown = ", ".join(map(str, pool)) if len(pool) <= 12 else f"{', '.join(map(str, pool[:10]))}, …, {pool[-1]}"
    if label is not None:
        text += f" ({where}'s digits of class {label}: {shown})"
    if len(pool) < n:
        return text + f"; {where} has only {len(pool)} in all: lower --batch"
    return text + f"; --digit {pool[-n]} or an earlier one{' of them' if label is not None else ''} gives {n}"


def _sample_file(filename: str):
    """Return a Traversable for one of the package's own data files."""
    return importlib.resources.files("tracer.data").joinpath(filename)


def _gunzip(raw: bytes, name: str) -> bytes:
    """Decompress gzip data, turning any corruption into TracerError."""
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise TracerError(f"truncated gzip file: {name}") from None
    except (OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise TracerError(f"corrupt gzip file: {name} ({exc})") from None


def _parse_idx(raw: bytes, name: str) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file; see the module docstring."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise TracerError(f"not an IDX file: {name} (bad magic number)")
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_TYPES:
        raise TracerError(
            f"not an IDX file: {name} (unknown data type code 0x{type_code:02X})"
        )
    if ndim == 0:
        raise TracerError(f"not an IDX file: {name} (zero dimensions)")
    header_size = 4 + 4 * ndim
    if len(raw) < header_size:
        raise TracerError(f"truncated IDX file: {name} (header cut short)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype, _ = _IDX_TYPES[type_code]
    expected = math.prod(dims) * dtype.itemsize
    actual = len(raw) - header_size
    shape_text = "x".join(str(d) for d in dims)
    if actual < expected:
        raise TracerError(
            f"truncated IDX file: {name} (shape {shape_text} needs {expected} "
            f"data bytes, found {actual})"
        )
    if actual > expected:
        raise TracerError(
            f"not a valid IDX file: {name} ({actual - expected} unexpected bytes "
            f"after the data for shape {shape_text})"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(dims)
    # Native byte order and a writable copy independent of ``raw``.
    return data.astype(dtype.newbyteorder("="))
