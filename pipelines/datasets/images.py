"""Image dataset sources: scikit-learn's 8x8 digits (embedded, no download) and an ImageNet-layout folder.

Each source writes `<out_dir>/manifest.json` and WebDataset shards through
`components.core.shards.write_image_dataset`, atomically and byte-for-byte reproducibly.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from components.core.errors import ConfigError, DataError
from components.core.shards import encode_npy, write_image_dataset

GENERATOR_VERSION = 1  # bump when a source's output bytes change for the same options
IMAGEFOLDER_VERSION = 2  # imagefolder's own: 2 = shorter side + centre crop, bicubic (1 squashed with a box filter)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# the 8 non-zero one-pixel shifts: a shift with zero fill always changes a non-blank image
_SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
_JITTER = (0.85, 1.15)  # intensity gain range: mild enough that a digit stays a digit


def _check_options(source: str, val_fraction: float, test_fraction: float, samples_per_shard: int) -> None:
    for key, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= value < 1:
            raise ConfigError(f"{source}: option {key} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1:
        raise ConfigError(f"{source}: val_fraction + test_fraction must be < 1, got {val_fraction + test_fraction}")
    if int(samples_per_shard) != samples_per_shard or samples_per_shard < 1:
        raise ConfigError(f"{source}: option samples_per_shard must be an integer >= 1, got {samples_per_shard}")


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Indices of train/val/test, each class split in the same proportions, each split in shuffled order."""
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        num_test = round(len(members) * test_fraction)
        num_val = round(len(members) * val_fraction)
        parts["test"].append(members[:num_test])
        parts["val"].append(members[num_test : num_test + num_val])
        parts["train"].append(members[num_test + num_val :])
    return {split: rng.permutation(np.concatenate(chunks)).astype(np.int64) for split, chunks in parts.items()}


def augment_digits(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-zero shift of one pixel (zero fill) and a random gain per image; uint8 in, uint8 out."""
    count, height, width = images.shape
    shift_choice = rng.integers(0, len(_SHIFTS), size=count)
    gains = rng.uniform(*_JITTER, size=count)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))
    shifted = np.empty_like(images)
    for choice, (dy, dx) in enumerate(_SHIFTS):
        rows = shift_choice == choice
        shifted[rows] = padded[rows, 1 - dy : 1 - dy + height, 1 - dx : 1 - dx + width]
    return np.clip(np.rint(shifted * gains[:, None, None]), 0, 255).astype(np.uint8)


def _npy_samples(images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[bytes, int]]:
    for image, label in zip(images, labels):
        yield encode_npy(image), int(label)


def prepare_digits(
    out_dir: Path,
    *,
    repeat: int = 1,
    seed: int = 0,
    samples_per_shard: int = 10000,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> dict:
    """scikit-learn's 1797 8x8 digits as uint8 .npy shards, split train/val/test with a seeded stratified split.

    repeat > 1 appends repeat - 1 augmented copies of the train split (repeat=40 gives ~50k samples,
    for benchmarks); val and test stay the original, unaugmented images.
    """
    from sklearn.datasets import load_digits

    _check_options("sklearn-digits", val_fraction, test_fraction, samples_per_shard)
    if int(repeat) != repeat or repeat < 1:
        raise ConfigError(f"sklearn-digits: option repeat must be an integer >= 1, got {repeat}")
    digits = load_digits()
    # sklearn's pixels are counts 0..16 (of a 4x4 block); stretch them over the uint8 range
    images = np.rint(digits.images * 255 / 16).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    split_indices = stratified_split(labels, val_fraction, test_fraction, np.random.default_rng(seed))

    train_images = [images[split_indices["train"]]]
    train_labels = labels[split_indices["train"]]
    for copy in range(1, int(repeat)):
        train_images.append(augment_digits(train_images[0], np.random.default_rng([seed, copy])))
    split_arrays = {
        "train": (np.concatenate(train_images), np.tile(train_labels, int(repeat))),
        "val": (images[split_indices["val"]], labels[split_indices["val"]]),
        "test": (images[split_indices["test"]], labels[split_indices["test"]]),
    }
    return write_image_dataset(
        out_dir,
        source="sklearn-digits",
        options={
            "repeat": int(repeat),
            "seed": int(seed),
            "samples_per_shard": int(samples_per_shard),
            "val_fraction": float(val_fraction),
            "test_fraction": float(test_fraction),
        },
        generator_version=GENERATOR_VERSION,
        image_format="npy",
        shape=list(images.shape[1:]),
        classes=[str(name) for name in digits.target_names],
        splits={name: (len(arr[1]), _npy_samples(*arr)) for name, arr in split_arrays.items()},
        samples_per_shard=int(samples_per_shard),
    )


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its image files, both sorted by name, so the label of a class never depends on the OS."""
    class_dirs = sorted(
        (path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")), key=lambda p: p.name
    )
    if not class_dirs:
        raise DataError(f"image folder {root} has no class subfolders: put each class's images in {root}/<class>/")
    folders = {}
    for class_dir in class_dirs:
        files = sorted(
            (path for path in class_dir.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: p.relative_to(class_dir).as_posix(),
        )
        if not files:
            raise DataError(f"class folder {class_dir} has no JPEG or PNG images: add images or remove the folder")
        folders[class_dir.name] = files
    return folders


def _flatten(folders: dict[str, list[Path]], classes: list[str], root: Path) -> tuple[list[Path], np.ndarray]:
    label_of = {name: label for label, name in enumerate(classes)}
    paths, labels = [], []
    for name, files in folders.items():
        if name not in label_of:
            raise DataError(f"class folder {root / name} is not a class of the train folder: rename or remove it")
        paths.extend(files)
        labels.extend([label_of[name]] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def resize_center_crop(image: Image.Image, size: int, resize: int) -> Image.Image:
    """The field's eval transform: the shorter side to `resize` (aspect kept), then the central size x size.

    Bicubic, antialiased (PIL widens the filter's support by the downscale factor); the crop offset rounds as
    torchvision's center_crop does."""
    width, height = image.size
    scale = resize / min(width, height)
    new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
    if (new_width, new_height) != (width, height):
        image = image.resize((new_width, new_height), Image.Resampling.BICUBIC)
    left, top = round((new_width - size) / 2), round((new_height - size) / 2)
    return image.crop((left, top, left + size, top + size))


def _encode_resized(path: Path, size: int, resize: int, image_format: str) -> bytes:
    try:
        with Image.open(path) as image:
            resized = resize_center_crop(image.convert("RGB"), size, resize)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"cannot read image {path} ({type(error).__name__}): fix or remove the file") from None
    buffer = io.BytesIO()
    if image_format == "png":
        resized.save(buffer, format="PNG", compress_level=6)
    else:
        resized.save(buffer, format="JPEG", quality=95)  # 95: near-lossless at small sizes, still ~3x smaller than PNG
    return buffer.getvalue()


def _encoded_samples(
    paths: list[Path], labels: np.ndarray, size: int, resize: int, image_format: str
) -> Iterator[tuple[bytes, int]]:
    for path, label in zip(paths, labels):
        yield _encode_resized(path, size, resize, image_format), int(label)


def prepare_imagefolder(
    out_dir: Path,
    *,
    src: str,
    size: int = 32,
    resize: int | None = None,
    format: Literal["png", "jpg"] = "png",
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    samples_per_shard: int = 10000,
) -> dict:
    """An ImageNet-layout folder (`<src>/<class>/*.jpg|png`) as size x size RGB, stored encoded: each image's
    shorter side scaled to `resize` (default: size; 256 with size 224 is the ImageNet eval transform), bicubic
    and antialiased, then centre-cropped to size x size (the aspect ratio is kept, never squashed). size is 32
    by default (CIFAR); ImageNet papers train at size=224.

    With `<src>/train/` and `<src>/val/` (and optionally `<src>/test/`) those folders are the splits
    and the fractions are unused (without `test/` the test split is empty); otherwise one seeded
    stratified split. Classes are the sorted class folder names; label i is classes[i].
    """
    _check_options("imagefolder", val_fraction, test_fraction, samples_per_shard)
    if format not in ("png", "jpg"):
        raise ConfigError(f"imagefolder: option format must be 'png' or 'jpg', got {format!r}")
    if int(size) != size or size < 1:
        raise ConfigError(f"imagefolder: option size must be an integer >= 1, got {size}")
    resize = size if resize is None else resize
    if int(resize) != resize or resize < size:
        raise ConfigError(f"imagefolder: option resize must be an integer >= size ({size}), got {resize}")
    root = Path(src)
    if not root.is_dir():
        raise DataError(f"image folder {root} (option src) does not exist: point src at an ImageNet-layout folder")
    rng = np.random.default_rng(seed)
    split_files: dict[str, tuple[list[Path], np.ndarray]] = {}
    if (root / "train").is_dir() and (root / "val").is_dir():
        train_folders = _class_folders(root / "train")
        classes = list(train_folders)
        for split in ("train", "val", "test"):
            split_root = root / split
            if split_root.is_dir():
                folders = train_folders if split == "train" else _class_folders(split_root)
                paths, labels = _flatten(folders, classes, split_root)
            else:
                paths, labels = [], np.zeros(0, dtype=np.int64)
            order = rng.permutation(len(paths))
            split_files[split] = ([paths[i] for i in order], labels[order])
    else:
        folders = _class_folders(root)
        classes = list(folders)
        paths, labels = _flatten(folders, classes, root)
        for split, indices in stratified_split(labels, val_fraction, test_fraction, rng).items():
            split_files[split] = ([paths[i] for i in indices], labels[indices])
    return write_image_dataset(
        out_dir,
        source="imagefolder",
        options={
            "src": str(src),
            "size": int(size),
            "resize": int(resize),
            "format": format,
            "val_fraction": float(val_fraction),
            "test_fraction": float(test_fraction),
            "seed": int(seed),
            "samples_per_shard": int(samples_per_shard),
        },
        generator_version=IMAGEFOLDER_VERSION,
        image_format=format,
        shape=[int(size), int(size), 3],
        classes=classes,
        splits={
            split: (len(paths), _encoded_samples(paths, labels, int(size), int(resize), format))
            for split, (paths, labels) in split_files.items()
        },
        samples_per_shard=int(samples_per_shard),
    )
