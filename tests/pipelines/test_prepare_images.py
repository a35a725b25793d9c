"""Preparing image datasets: the digits and image-folder sources, the registry's checks, and verify."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from components.core.errors import ConfigError, DataError
from components.core.shards import ImageShards, sha256_file
from pipelines.datasets import SOURCES, load_source, prepare, verify

DIGITS = "images/digits"


def dataset_files(dataset_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(dataset_dir.iterdir())}


def rows_with_labels(images: np.ndarray, labels: np.ndarray) -> list[tuple[bytes, int]]:
    return sorted(zip(map(bytes, images), labels.tolist()))


@pytest.fixture(scope="module")
def digits_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    prepare(DIGITS, {"source": "sklearn-digits"}, root)
    return root


def test_every_registered_source_loads():
    for source in SOURCES:
        assert callable(load_source(source))


def test_preparing_twice_is_byte_identical(digits_root, tmp_path):
    first = dataset_files(digits_root / DIGITS)
    assert prepare(DIGITS, {"source": "sklearn-digits", "repeat": 1}, tmp_path) == tmp_path / DIGITS
    assert dataset_files(tmp_path / DIGITS) == first
    prepare(DIGITS, {"source": "sklearn-digits"}, tmp_path)  # replaces the existing version in place
    assert dataset_files(tmp_path / DIGITS) == first
    assert [path.name for path in (tmp_path / "images").iterdir()] == ["digits"]


def test_digits_manifest(digits_root):
    dataset_dir = digits_root / DIGITS
    manifest = json.loads((dataset_dir / "manifest.json").read_text())
    assert manifest["name"] == DIGITS and manifest["kind"] == "images" and manifest["source"] == "sklearn-digits"
    assert manifest["format"] == "npy" and manifest["shape"] == [8, 8] and manifest["dtype"] == "uint8"
    assert manifest["classes"] == [str(i) for i in range(10)]
    assert manifest["options"] == {
        "repeat": 1,
        "seed": 0,
        "samples_per_shard": 10000,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
    }
    counts = {split: entry["count"] for split, entry in manifest["splits"].items()}
    assert sum(counts.values()) == 1797 and set(counts) == {"train", "val", "test"}
    assert 0.13 < counts["val"] / 1797 < 0.17 and 0.13 < counts["test"] / 1797 < 0.17
    for entry in manifest["splits"].values():
        assert sum(shard["count"] for shard in entry["shards"]) == entry["count"]
        for shard in entry["shards"]:
            assert sha256_file(dataset_dir / shard["file"]) == shard["sha256"]
            assert (dataset_dir / shard["file"]).stat().st_size == shard["bytes"]


def test_digits_splits_hold_every_original_image_once(digits_root):
    digits = load_digits()
    scaled = np.round(digits.images * 255 / 16).astype(np.uint8)
    parts = [ImageShards(digits_root, DIGITS, split).arrays() for split in ("train", "val", "test")]
    stored_images = np.concatenate([images for images, _ in parts])
    stored_labels = np.concatenate([labels for _, labels in parts])
    assert stored_images.shape == (1797, 8, 8)
    assert rows_with_labels(stored_images, stored_labels) == rows_with_labels(scaled, digits.target)
    for _, labels in parts:  # stratified: every class in every split
        assert set(labels.tolist()) == set(range(10))


def test_repeat_augments_train_only(digits_root, tmp_path):
    prepare(DIGITS, {"source": "sklearn-digits", "repeat": 3}, tmp_path)
    train = ImageShards(digits_root, DIGITS, "train")
    originals, original_labels = train.arrays()
    repeated, repeated_labels = ImageShards(tmp_path, DIGITS, "train").arrays()
    count = len(originals)
    assert len(repeated) == 3 * count
    np.testing.assert_array_equal(repeated[:count], originals)
    for copy in (1, 2):
        augmented = repeated[copy * count : (copy + 1) * count]
        np.testing.assert_array_equal(repeated_labels[copy * count : (copy + 1) * count], original_labels)
        assert all(not np.array_equal(a, b) for a, b in zip(augmented, originals))
        # a 1-pixel shift with a mild gain keeps most of the ink: correlated with, not equal to, the original
        assert abs(int(augmented.astype(int).sum()) - int(originals.astype(int).sum())) < 0.2 * originals.sum()
    assert not np.array_equal(repeated[count : 2 * count], repeated[2 * count :])
    for split in ("val", "test"):
        shard = f"{DIGITS}/{split}-000000.tar"
        assert (tmp_path / shard).read_bytes() == (digits_root / shard).read_bytes()


def test_verify_finds_a_flipped_payload_byte(tmp_path):
    prepare(DIGITS, {"source": "sklearn-digits", "samples_per_shard": 500}, tmp_path)
    assert verify(tmp_path) == [DIGITS]
    assert verify(tmp_path, DIGITS) == [DIGITS]
    shard = tmp_path / DIGITS / "train-000001.tar"
    data = bytearray(shard.read_bytes())
    # a pixel of sample 500, past its 128-byte .npy header: sizes and headers stay valid
    data[1024 + 512 + 128 + 10] ^= 0xFF
    shard.write_bytes(bytes(data))
    ImageShards(tmp_path, DIGITS, "train", verify=False)  # the structural checks cannot see it ...
    message = r"train-000001\.tar does not match its sha256.*paperzoo prepare images digits"
    with pytest.raises(DataError, match=message):
        verify(tmp_path)
    with pytest.raises(DataError, match=message + r".*paperzoo verify images/digits"):
        ImageShards(tmp_path, DIGITS, "train")  # ... the reader's hash, before any sample is read, does
    ImageShards(tmp_path, DIGITS, "val")  # the other splits' shards are fine


def test_unknown_source_is_suggested(tmp_path):
    message = r"datasets\.images/digits\.source: unknown source 'sklearn-digit' \(did you mean 'sklearn-digits'\?\)"
    with pytest.raises(ConfigError, match=message):
        prepare(DIGITS, {"source": "sklearn-digit"}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_unknown_option_fails_before_any_work(tmp_path):
    with pytest.raises(
        ConfigError, match=r"unknown option 'repet' for source sklearn-digits \(did you mean 'repeat'\?\)"
    ):
        prepare(DIGITS, {"source": "sklearn-digits", "repet": 2}, tmp_path)
    with pytest.raises(ConfigError, match="needs option 'src'"):
        prepare("images/folder", {"source": "imagefolder"}, tmp_path)
    with pytest.raises(ConfigError, match="'<kind>/<name>'"):
        prepare("digits", {"source": "sklearn-digits"}, tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "options, message",
    [
        ({"repeat": "abc"}, r"option repeat of source sklearn-digits must be an integer, got 'abc'"),
        ({"repeat": 1.5}, r"option repeat of source sklearn-digits must be an integer, got 1\.5"),
        ({"repeat": True}, r"option repeat of source sklearn-digits must be an integer, got True"),
        ({"val_fraction": "a tenth"}, r"option val_fraction of source sklearn-digits must be a number"),
    ],
)
def test_an_option_of_the_wrong_type_is_named_before_any_work(tmp_path, options, message):
    with pytest.raises(ConfigError, match=message):
        prepare(DIGITS, {"source": "sklearn-digits", **options}, tmp_path)
    assert not any(tmp_path.iterdir())


def test_options_are_read_as_their_annotated_types(tmp_path):
    from pipelines.datasets import check_spec

    _, options = check_spec(DIGITS, {"source": "sklearn-digits", "repeat": 2.0, "val_fraction": 0})
    assert options == {"repeat": 2, "val_fraction": 0} and isinstance(options["repeat"], int)
    _, options = check_spec("images/f", {"source": "imagefolder", "src": 2016, "format": "jpg"})
    assert options["src"] == "2016"
    with pytest.raises(
        ConfigError, match=r"option format of source imagefolder must be one of 'png', 'jpg', got 'jpeg'"
    ):
        check_spec("images/f", {"source": "imagefolder", "src": "x", "format": "jpeg"})


COLOURS = {"zebra": (0, 0, 255), "ant": (255, 0, 0), "moose": (0, 255, 0)}  # sorted: ant, moose, zebra


def make_image_folder(root: Path, per_class: int = 4) -> None:
    """Solid-colour images per class, PNG and JPEG, of different sizes and modes."""
    for name, colour in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = Image.new("RGB", (10 + 7 * i, 12 + 3 * i), colour)
            if i % 2:
                image.save(root / name / f"{i}.JPEG", quality=95)
            else:
                image.convert("RGBA").save(root / name / f"{i}.png")


def assert_labels_match_colours(images: np.ndarray, labels: np.ndarray) -> None:
    dominant_channel = images.reshape(len(images), -1, 3).mean(axis=1).argmax(axis=1)
    expected = {label: int(np.argmax(COLOURS[name])) for label, name in enumerate(sorted(COLOURS))}
    assert dominant_channel.tolist() == [expected[label] for label in labels.tolist()]


@pytest.mark.parametrize("image_format", ["png", "jpg"])
def test_imagefolder_resizes_and_labels_by_sorted_class_name(tmp_path, image_format):
    make_image_folder(tmp_path / "src", per_class=6)
    spec = {
        "source": "imagefolder",
        "src": str(tmp_path / "src"),
        "size": 8,
        "format": image_format,
        "val_fraction": 1 / 6,
        "test_fraction": 1 / 6,
    }
    prepare("images/folder", spec, tmp_path / "data")
    first = dataset_files(tmp_path / "data/images/folder")
    prepare("images/folder", spec, tmp_path / "data")
    assert dataset_files(tmp_path / "data/images/folder") == first
    counts = {}
    for split in ("train", "val", "test"):
        shards = ImageShards(tmp_path / "data", "images/folder", split)
        assert shards.classes == ["ant", "moose", "zebra"] and shards.shape == (8, 8, 3)
        images, labels = shards.arrays()
        assert images.shape == (len(labels), 8, 8, 3) and images.dtype == np.uint8
        assert_labels_match_colours(images, labels)
        counts[split] = np.bincount(labels, minlength=3).tolist()
    assert counts == {"train": [4, 4, 4], "val": [1, 1, 1], "test": [1, 1, 1]}
    assert verify(tmp_path / "data") == ["images/folder"]


def test_imagefolder_uses_train_and_val_folders(tmp_path):
    make_image_folder(tmp_path / "src/train", per_class=3)
    make_image_folder(tmp_path / "src/val", per_class=1)
    prepare("images/folder", {"source": "imagefolder", "src": str(tmp_path / "src"), "size": 5}, tmp_path / "data")
    counts = {
        split: ImageShards(tmp_path / "data", "images/folder", split).num_samples for split in ("train", "val", "test")
    }
    assert counts == {"train": 9, "val": 3, "test": 0}
    assert_labels_match_colours(*ImageShards(tmp_path / "data", "images/folder", "val").arrays())


def test_imagefolder_errors_name_the_file(tmp_path):
    spec = {"source": "imagefolder", "src": str(tmp_path / "src"), "size": 4}
    with pytest.raises(DataError, match=r"image folder .*src \(option src\) does not exist"):
        prepare("images/folder", spec, tmp_path / "data")
    make_image_folder(tmp_path / "src", per_class=2)
    prepare("images/folder", spec, tmp_path / "data")
    before = dataset_files(tmp_path / "data/images/folder")

    broken = tmp_path / "src/moose/broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*moose/broken\.jpg"):
        prepare("images/folder", spec, tmp_path / "data")
    # the failed prepare left the previous version whole and no staging folder behind
    assert dataset_files(tmp_path / "data/images/folder") == before
    assert [path.name for path in (tmp_path / "data/images").iterdir()] == ["folder"]

    broken.unlink()
    (tmp_path / "src/empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*src/empty has no JPEG or PNG images"):
        prepare("images/folder", spec, tmp_path / "data")


def test_imagefolder_keeps_the_aspect_ratio_shorter_side_then_centre_crop(tmp_path):
    # a 60x20 image (wide) of three 20x20 colour blocks: the shorter side goes to size, the centre crop keeps the
    # middle block only (squashing would keep all three side by side); a smooth ramp is downscaled antialiased
    (tmp_path / "src/train/a").mkdir(parents=True)
    (tmp_path / "src/val/a").mkdir(parents=True)
    blocks = np.zeros((20, 60, 3), np.uint8)
    blocks[:, :20], blocks[:, 20:40], blocks[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    Image.fromarray(blocks).save(tmp_path / "src/train/a/blocks.png")
    stripes = np.zeros((40, 40, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: an antialiased 4x downscale averages them to mid grey
    Image.fromarray(stripes).save(tmp_path / "src/val/a/stripes.png")
    spec = {"source": "imagefolder", "src": str(tmp_path / "src"), "size": 10}
    prepare("images/folder", spec, tmp_path / "data")
    (train,), _ = ImageShards(tmp_path / "data", "images/folder", "train").arrays()
    assert train.shape == (10, 10, 3)
    assert (train[:, :, 1] > 200).all() and (train[:, :, [0, 2]] < 60).all()  # the green middle block, whole
    (val,), _ = ImageShards(tmp_path / "data", "images/folder", "val").arrays()
    assert np.abs(val.astype(int) - 128).max() < 40  # not aliased to black or white stripes
    manifest = json.loads((tmp_path / "data/images/folder/manifest.json").read_text())
    assert manifest["shape"] == [10, 10, 3]
    assert manifest["options"]["size"] == 10 and manifest["options"]["resize"] == 10
    assert ImageShards(tmp_path / "data", "images/folder", "test").num_samples == 0  # train/ and val/ only

    # resize > size: the ImageNet eval transform (256 then centre 224) scaled down: shorter side 15, centre 10
    prepare("images/folder", spec | {"resize": 15}, tmp_path / "data")
    manifest = json.loads((tmp_path / "data/images/folder/manifest.json").read_text())
    assert manifest["shape"] == [10, 10, 3] and manifest["options"]["resize"] == 15
    (train,), _ = ImageShards(tmp_path / "data", "images/folder", "train").arrays()
    assert (train[:, :, 1] > 200).all()  # 45x15 -> the middle 10 columns are inside the green block (15..30)
    with pytest.raises(ConfigError, match="option resize must be an integer >= size"):
        prepare("images/folder", spec | {"resize": 9}, tmp_path / "data")
