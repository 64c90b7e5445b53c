"""Tests for tracer.mnist: the shipped sample, IDX reading and its errors."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from tracer.data import mnist
from tracer.errors import TracerError

SHARED = Path("/work/shared/data/mnist")


def idx_file(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Encode ``array`` as IDX bytes (big-endian data) for the tests."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.astype(dtypes[type_code]).tobytes()


def assert_one_line(exc_info, *words):
    message = str(exc_info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


# --- the shipped sample ----------------------------------------------------


def test_sample_images_shape_and_dtype():
    images = mnist.load_images()
    assert images.shape == (100, 28, 28)
    assert images.dtype == np.uint8
    assert mnist.SAMPLE_SIZE == mnist.sample_size() == 100


def test_sample_labels():
    labels = mnist.load_labels()
    assert labels.shape == (100,)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert set(labels.tolist()) <= set(range(10))


def test_sample_equals_first_100_of_full_test_set():
    images_path = SHARED / "t10k-images-idx3-ubyte.gz"
    labels_path = SHARED / "t10k-labels-idx1-ubyte.gz"
    if not SHARED.is_dir():
        pytest.skip(f"full MNIST test set not available ({SHARED} is absent)")
    full_images = mnist.read_idx(images_path)
    full_labels = mnist.read_idx(labels_path)
    assert full_images.shape == (10000, 28, 28)
    assert np.array_equal(mnist.load_images(), full_images[:100])
    assert np.array_equal(mnist.load_labels(), full_labels[:100])


def test_load_digit_zero():
    pixels, label = mnist.load_digit(0)
    raw = mnist.load_images()[0]
    assert pixels.shape == (1, 784)
    assert pixels.dtype == np.float64
    assert label == 7
    assert pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert raw.max() == 255  # so the scaled maximum is exactly 1.0
    assert pixels.max() == 1.0
    assert np.array_equal(pixels, raw.reshape(1, 784) / 255.0)


def test_load_digit_last():
    pixels, label = mnist.load_digit(99)
    assert pixels.shape == (1, 784)
    assert label == int(mnist.load_labels()[99])


@pytest.mark.parametrize("index", [100, 150, -1])
def test_load_digit_out_of_range(index):
    with pytest.raises(TracerError) as exc_info:
        mnist.load_digit(index)
    assert_one_line(exc_info, f"--digit {index} is out of range", "100 digits (0-99)")


# --- read_idx on user files ------------------------------------------------


def test_read_idx_plain_and_gzipped(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    plain = tmp_path / "plain.idx"
    zipped = tmp_path / "zipped.bin"  # no .gz suffix: gzip is found by magic
    plain.write_bytes(idx_file(array))
    zipped.write_bytes(gzip.compress(idx_file(array)))
    for path in (plain, zipped, str(plain)):
        result = mnist.read_idx(path)
        assert result.dtype == np.uint8
        assert np.array_equal(result, array)


@pytest.mark.parametrize(
    "type_code, dtype",
    [(0x09, np.int8), (0x0B, np.int16), (0x0C, np.int32), (0x0D, np.float32), (0x0E, np.float64)],
)
def test_read_idx_other_types_are_big_endian(tmp_path, type_code, dtype):
    array = np.array([[-2, 0, 3], [7, -100, 100]], dtype=dtype)
    path = tmp_path / "data.idx"
    path.write_bytes(idx_file(array, type_code))
    result = mnist.read_idx(path)
    assert result.dtype == np.dtype(dtype)
    assert np.array_equal(result, array)


def test_load_images_user_file(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    path = tmp_path / "mine.gz"
    path.write_bytes(gzip.compress(idx_file(array)))
    assert np.array_equal(mnist.load_images(path), array)
    assert mnist.load_labels(path) is None
    pixels, label = mnist.load_digit(2, path)
    assert label is None
    assert np.array_equal(pixels, array[2].reshape(1, 784) / 255.0)
    with pytest.raises(TracerError) as exc_info:
        mnist.load_digit(3, path)
    assert_one_line(exc_info, "--digit 3 is out of range", "3 digits (0-2)", str(path))


def finds_batch(index, n, path=None) -> bool:
    try:
        mnist.load_batch(index, n, path, same_class=True)
    except TracerError:
        return False
    return True


@pytest.mark.parametrize("n", [1, 2, 5, 9, 12])
def test_starts_batch_is_load_batchs_rule(n, tmp_path):
    """One read of the file gives, for every digit, what load_batch would find: the shipped sample
    (labelled: the class's later digits) and a user's file without labels (any later digits)."""
    starts = mnist.starts_batch(n)
    assert list(starts) == [finds_batch(i, n) for i in range(mnist.sample_size())]
    assert starts.any() and (n == 1 or not starts.all())  # some digits have such a batch, some (n > 1) not
    path = tmp_path / "mine.gz"
    path.write_bytes(gzip.compress(idx_file(np.zeros((7, 28, 28), dtype=np.uint8))))
    assert list(mnist.starts_batch(n, path)) == [finds_batch(i, n, path) for i in range(7)]


# --- errors ----------------------------------------------------------------


def test_text_file_is_not_idx(tmp_path):
    path = tmp_path / "foo.txt"
    path.write_text("hello, these are not digits\n")
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "IDX", "foo.txt")


def test_unknown_type_code(tmp_path):
    path = tmp_path / "odd.idx"
    path.write_bytes(bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "IDX", "0x07", "odd.idx")


def test_truncated_data(tmp_path):
    path = tmp_path / "short.idx"
    path.write_bytes(idx_file(np.zeros((2, 3), dtype=np.uint8))[:-1])
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "truncated", "short.idx")


def test_truncated_header(tmp_path):
    path = tmp_path / "header.idx"
    path.write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "truncated", "header.idx")


def test_trailing_bytes(tmp_path):
    path = tmp_path / "long.idx"
    path.write_bytes(idx_file(np.zeros((2, 3), dtype=np.uint8)) + b"\x00")
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "long.idx")


def test_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    data = gzip.compress(idx_file(np.arange(200, dtype=np.uint8)))
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "gzip", "cut.gz")


def test_corrupt_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    data = bytearray(gzip.compress(idx_file(np.arange(200, dtype=np.uint8))))
    data[12:20] = b"\xff" * 8  # damage the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "gzip", "bad.gz")


def test_missing_file(tmp_path):
    path = tmp_path / "x.gz"
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(path)
    assert_one_line(exc_info, "not found", "x.gz")
    with pytest.raises(TracerError):
        mnist.load_images(path)
    with pytest.raises(TracerError):
        mnist.load_digit(0, path)


def test_directory(tmp_path):
    with pytest.raises(TracerError) as exc_info:
        mnist.read_idx(tmp_path)
    assert_one_line(exc_info, "directory", str(tmp_path))


def test_labels_file_passed_to_load_images(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_file(np.array([7, 2, 1], dtype=np.uint8))))
    with pytest.raises(TracerError) as exc_info:
        mnist.load_images(path)
    assert_one_line(exc_info, "expected an IDX images file (3 dimensions)", "labels.gz")


def test_wrong_image_size(tmp_path):
    path = tmp_path / "small.idx"
    path.write_bytes(idx_file(np.zeros((2, 8, 8), dtype=np.uint8)))
    with pytest.raises(TracerError) as exc_info:
        mnist.load_images(path)
    assert_one_line(exc_info, "28x28", "8x8", "small.idx")


def test_empty_images_file(tmp_path):
    path = tmp_path / "empty.idx"
    path.write_bytes(idx_file(np.zeros((0, 28, 28), dtype=np.uint8)))
    with pytest.raises(TracerError) as exc_info:
        mnist.load_images(path)
    assert_one_line(exc_info, "no images", "empty.idx")
