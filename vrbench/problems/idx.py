"""Image data sets in the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST, read from disk.

An IDX file is a big-endian header (two zero bytes, a type code, the number of dimensions, and
each dimension as a 32-bit integer) followed by the values, row-major (LeCun et al., "The
MNIST database of handwritten digits", 1998, "file formats"). vrbench reads them gzipped or
not, from a directory the user names, and never downloads anything: Debian and Ubuntu ship
Fashion-MNIST in the package ``dataset-fashion-mnist`` (its files under
:data:`DEFAULT_DIR`), the default. ``VRBENCH_DATA_DIR`` (:data:`ENVIRONMENT`) overrides the
default; a problem's ``data_dir`` parameter overrides both.

A directory holds one training and one test set: ``train-images-idx3-ubyte`` and
``t10k-images-idx3-ubyte`` (MNIST, Fashion-MNIST, KMNIST), each optionally ending in ``.gz``;
EMNIST's files carry a prefix naming the split (``emnist-letters-train-images-idx3-ubyte``,
``-test-`` for the test set), chosen with ``prefix``. EMNIST stores its images transposed;
models that treat pixels as a vector (every model here) are unaffected.

Dynamic binarization (Salakhutdinov & Murray, "On the quantitative analysis of deep belief
networks", ICML 2008; the papers since, DisARM's released code included) draws every pixel
``x ~ Bernoulli(intensity / 255)`` afresh each time an image is used.
"""

from __future__ import annotations

import functools
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vrbench.errors import VrbenchError
from vrbench.problems.base import DTYPE

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files."""

ENVIRONMENT = "VRBENCH_DATA_DIR"
"""The environment variable naming the default data directory."""

INSTALL_HINT = (
    "install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian, Ubuntu), or "
    f"point data_dir=DIR (or the environment variable {ENVIRONMENT}) at a directory holding "
    "MNIST-format IDX files (train-images-idx3-ubyte and t10k-images-idx3-ubyte, gzipped or "
    "not)")

_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
"""IDX type codes and the NumPy types they hold."""

SPLITS = {"train": ("train",), "test": ("t10k", "test")}
"""The names a split's image file may carry (``t10k`` in MNIST, ``test`` in EMNIST)."""


class DataError(VrbenchError):
    """A data directory without the files a problem needs, or a file that is not IDX."""


def data_dir(given: str = "") -> Path:
    """The directory to read: ``given``, else ``$VRBENCH_DATA_DIR``, else :data:`DEFAULT_DIR`."""
    return Path(given or os.environ.get(ENVIRONMENT) or DEFAULT_DIR).expanduser()


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """The array an IDX file holds (gzipped or not: the first bytes tell), in its own type."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _TYPES:
        raise DataError(f"{path} is not an IDX file (it starts with {raw[:4].hex()}; an IDX "
                        "file starts with two zero bytes, a type code and its rank)")
    rank = raw[3]
    header = 4 + 4 * rank
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", rank, 4))
    dtype = np.dtype(_TYPES[raw[2]])
    expected = header + dtype.itemsize * int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} holds {len(raw)} bytes; its header (shape {shape}, "
                        f"{dtype.itemsize}-byte values) says {expected}")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_images(directory: Path, split: str, prefix: str = "") -> Path | None:
    """The image file of ``split`` ("train" or "test") in ``directory``, or None."""
    for stem in SPLITS[split]:
        for name in (f"{prefix}{stem}-images-idx3-ubyte", f"{prefix}{stem}-images.idx3-ubyte"):
            for suffix in ("", ".gz"):
                if (directory / (name + suffix)).is_file():
                    return directory / (name + suffix)
    return None


def missing_reason(given: str = "", prefix: str = "") -> str | None:
    """Why the images of ``data_dir(given)`` cannot be read (with how to install them), or
    None when both splits are there."""
    directory = data_dir(given)
    missing = [split for split in SPLITS if find_images(directory, split, prefix) is None]
    if not missing:
        return None
    names = " and ".join(f"{prefix}{SPLITS[s][0]}-images-idx3-ubyte[.gz]" for s in missing)
    return f"no {names} in {directory}: {INSTALL_HINT}"


@dataclass(frozen=True)
class ImageSet:
    """A data set's training and test images, flattened to ``(N, pixels)`` as stored (bytes
    stay bytes: 60,000 Fashion-MNIST images take 47 MB, not 376 MB as float64); an image's
    intensities in [0, 1] are its values divided by ``scale``."""

    train: Tensor
    test: Tensor
    scale: float
    shape: tuple[int, ...]
    """One image's shape in the file (28 × 28 for MNIST)."""
    directory: Path

    @property
    def pixels(self) -> int:
        return int(self.train.shape[1])


@functools.cache
def load_images(directory: Path, prefix: str = "") -> ImageSet:
    """The training and test images of ``directory`` (read once per directory and prefix)."""
    arrays, scales, shapes = {}, set(), set()
    for split in SPLITS:
        path = find_images(directory, split, prefix)
        if path is None:
            raise DataError(missing_reason(str(directory), prefix) or "")
        images = read_idx(path)
        if images.ndim < 2 or images.shape[0] == 0:
            raise DataError(f"{path} holds an array of shape {images.shape}, not images")
        shapes.add(images.shape[1:])
        flat = images.reshape(images.shape[0], -1)
        if flat.dtype == np.uint8:
            scales.add(255.0)
        else:
            flat = flat.astype(np.float64)
            if flat.min() < 0 or flat.max() > 1:
                raise DataError(f"{path} holds values outside [0, 1] (and not bytes, which are "
                                "read as intensities out of 255)")
            scales.add(1.0)
        arrays[split] = torch.as_tensor(flat, device="cpu")
    if len(shapes) > 1 or len(scales) > 1:
        raise DataError(f"the training and test images of {directory} differ in shape or type "
                        f"({' and '.join(str(s) for s in sorted(shapes))})")
    return ImageSet(arrays["train"], arrays["test"], scales.pop(), shapes.pop(), directory)


def pooled(images: Tensor, shape: tuple[int, ...], scale: float, pool: int) -> Tensor:
    """Intensities in [0, 1] of stored images ``(N, pixels)`` of ``shape``, averaged over
    ``pool × pool`` blocks (the last rows and columns that do not fill a block dropped):
    ``(N, (rows // pool) · (columns // pool))``."""
    intensities = images.to(DTYPE) / scale
    if pool == 1:
        return intensities
    rows, columns = shape[0] // pool, (shape[1] if len(shape) > 1 else 1) // pool
    grid = intensities.reshape(images.shape[0], shape[0], -1)
    grid = grid[:, : rows * pool, : columns * pool]
    return grid.reshape(-1, rows, pool, columns, pool).mean((2, 4)).flatten(1)


def binarize(intensities: Tensor, generator: torch.Generator) -> Tensor:
    """Dynamic binarization: each pixel 1 with probability its intensity, drawn afresh."""
    uniforms = torch.rand(intensities.shape, generator=generator, dtype=DTYPE,
                          device=intensities.device)
    return (uniforms < intensities).to(DTYPE)


def write_idx(path: str | os.PathLike[str], array: np.ndarray, compress: bool = False) -> None:
    """Write ``array`` (unsigned bytes, or any type IDX holds) as an IDX file, gzipped if
    ``compress``: for small test sets and for data converted from other formats."""
    codes = {np.dtype(t).newbyteorder("="): code for code, t in _TYPES.items()}
    array = np.asarray(array)
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX holds no values of type {array.dtype}; valid types: "
                        + ", ".join(str(np.dtype(t)) for t in _TYPES.values()))
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    data = header + array.astype(np.dtype(_TYPES[code])).tobytes()
    Path(path).write_bytes(gzip.compress(data) if compress else data)
