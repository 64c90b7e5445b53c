"""Build the MNIST sample shipped in tracer/data from the full MNIST test set.

Reads the original test set files (default folder /work/shared/data/mnist):

    t10k-images-idx3-ubyte.gz   10,000 images, 28x28, unsigned bytes
    t10k-labels-idx1-ubyte.gz   their labels

checks them against their known md5 sums, and writes the first 100 digits
and labels as gzipped IDX files into tracer/data:

    mnist-test-first100-images-idx3-ubyte.gz
    mnist-test-first100-labels-idx1-ubyte.gz

The gzip header carries mtime 0 and no file name, so the output is the
same byte for byte on every run.

Usage:  python scripts/build_mnist_sample.py [--source DIR] [--dest DIR]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tracer.mnist import SAMPLE_IMAGES, SAMPLE_LABELS, SAMPLE_SIZE, read_idx  # noqa: E402

SOURCE_IMAGES = "t10k-images-idx3-ubyte.gz"
SOURCE_LABELS = "t10k-labels-idx1-ubyte.gz"

# md5 of the gzipped source files, as listed in the source folder's README.
SOURCE_MD5 = {
    SOURCE_IMAGES: "2c57910da66b1e3036e350d10c8c03e1",
    SOURCE_LABELS: "cb1dbc8694c1ed44a28edef0c01aec2a",
}


def check_md5(path: Path) -> None:
    """Stop with a message if ``path`` is not the expected source file."""
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    if digest != SOURCE_MD5[path.name]:
        sys.exit(f"md5 mismatch for {path}: {digest}, expected {SOURCE_MD5[path.name]}")


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode an unsigned-byte array as an uncompressed IDX file."""
    if array.dtype != np.uint8:
        raise ValueError("only unsigned byte arrays are written")
    header = bytes([0, 0, 0x08, array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + np.ascontiguousarray(array).tobytes()


def write_gzipped(path: Path, data: bytes) -> None:
    """Write ``data`` gzipped, reproducibly (mtime 0, no stored file name)."""
    path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/work/shared/data/mnist"))
    parser.add_argument("--dest", type=Path, default=REPO / "tracer" / "data")
    args = parser.parse_args()

    for name in (SOURCE_IMAGES, SOURCE_LABELS):
        check_md5(args.source / name)
    images = read_idx(args.source / SOURCE_IMAGES)[:SAMPLE_SIZE]
    labels = read_idx(args.source / SOURCE_LABELS)[:SAMPLE_SIZE]
    assert images.shape == (SAMPLE_SIZE, 28, 28) and labels.shape == (SAMPLE_SIZE,)

    args.dest.mkdir(parents=True, exist_ok=True)
    outputs = [(args.dest / SAMPLE_IMAGES, images), (args.dest / SAMPLE_LABELS, labels)]
    for path, array in outputs:
        write_gzipped(path, idx_bytes(array))
        # Read back to make sure the file round-trips.
        assert np.array_equal(read_idx(path), array)
        print(f"wrote {path} ({path.stat().st_size} bytes, shape {array.shape})")
    print("first ten labels:", " ".join(str(x) for x in labels[:10]))


if __name__ == "__main__":
    main()
