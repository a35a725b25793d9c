"""components/core/augment.py: ImageNet's random-resized crop + flip and mean/std, and DeiT's recipe pieces
(RandAugment, random erasing, mixup / cutmix, label smoothing). Each test checks a property a wrong
implementation fails: the crop's area and aspect ranges, mirrors, lam applied to pixels and targets alike, the
cutmix lam equal to the pasted area, determinism per seed."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from components.core import augment
from components.core.augment import (
    CROP_RATIO,
    CROP_SCALE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RANDAUGMENT_OPS,
    apply_op,
    crop_box,
    cutmix_box,
    imagenet_normalise,
    mixup_cutmix,
    pad_crop_flip,
    rand_augment,
    random_erasing,
    random_resized_crop_flip,
    soft_cross_entropy,
    soft_targets,
)


def photos(count: int = 8, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth images with structure (a gradient plus a bright square), so crops and flips are distinguishable."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) * 255 // (width + height)], axis=-1)
    out = np.repeat(base[None], count, axis=0).astype(np.int64)
    for index in range(count):
        top, left = rng.integers(0, height - 8), rng.integers(0, width - 8)
        out[index, top : top + 8, left : left + 8] = 255
    return out.astype(np.uint8)


def test_crop_boxes_lie_in_the_scale_and_ratio_ranges_and_cover_them():
    rng = np.random.default_rng(0)
    height, width = 224, 224
    areas, ratios = [], []
    for _ in range(4000):
        top, left, h, w = crop_box(height, width, rng)
        assert 0 <= top and top + h <= height and 0 <= left and left + w <= width
        areas.append(h * w / (height * width))
        ratios.append(w / h)
    areas, ratios = np.array(areas), np.array(ratios)
    slack = 2 / 224  # rounding h and w to whole pixels
    assert areas.min() >= CROP_SCALE[0] * (1 - 2 * slack) - 1e-9 and areas.max() <= 1.0
    assert ratios.min() >= CROP_RATIO[0] * (1 - slack) and ratios.max() <= CROP_RATIO[1] * (1 + slack)
    # the ranges are used, not a fixed point: small and near-full crops, wide and tall ones
    assert areas.min() < 0.1 and areas.max() > 0.9 and ratios.min() < 0.8 and ratios.max() > 1.25
    # the area is drawn uniformly: below 0.5625 every ratio in [3/4, 4/3] fits the square, so no try is rejected
    # there and the accepted areas are flat on [0.08, 0.5] (large areas are thinned by rejected tries)
    low, high = np.sum((areas >= 0.08) & (areas < 0.29)), np.sum((areas >= 0.29) & (areas < 0.5))
    assert abs(low - high) < 0.12 * (low + high) / 2
    assert 0.35 < np.mean(areas > 0.5) < 0.55  # torchvision's sampling gives 0.44 here; a squared draw ~0.25
    # the aspect ratio is log-uniform: log ratios symmetric around 0
    assert abs(np.log(ratios).mean()) < 0.02


def test_crop_positions_are_uniform_over_the_free_range():
    rng = np.random.default_rng(1)
    tops = [crop_box(100, 100, rng, scale=(0.25, 0.25), ratio=(1, 1))[0] for _ in range(3000)]
    assert min(tops) == 0 and max(tops) == 50  # h = w = 50: top in [0, 50], both ends reachable
    assert abs(np.mean(tops) - 25) < 1.5


def test_crop_falls_back_to_the_centre_when_no_try_fits():
    # a 10:1 strip cannot hold a crop of ratio <= 4/3 and area >= 0.9 of it: the fallback is the largest centred
    # box with the ratio clamped to 4/3 (torchvision)
    rng = np.random.default_rng(0)
    top, left, h, w = crop_box(10, 100, rng, scale=(0.9, 1.0))
    assert (h, w) == (10, round(10 * 4 / 3)) and top == 0 and left == (100 - w) // 2
    top, left, h, w = crop_box(100, 10, rng, scale=(0.9, 1.0))
    assert (h, w) == (round(10 / (3 / 4)), 10) and left == 0 and top == (100 - h) // 2


def test_random_resized_crop_outputs_the_train_size_and_is_the_resized_box():
    from PIL import Image

    images = photos()
    out = random_resized_crop_flip(images, 32, np.random.default_rng(3), flip=False)
    assert out.shape == (8, 32, 32, 3) and out.dtype == np.uint8
    rng = np.random.default_rng(3)
    for index in range(len(images)):  # the same draws: each output is its box, resized
        top, left, h, w = crop_box(48, 64, rng)
        box = images[index, top : top + h, left : left + w]
        expected = np.asarray(Image.fromarray(box).resize((32, 32), Image.Resampling.BICUBIC))
        assert np.array_equal(out[index], expected)


def test_full_crop_at_the_same_size_is_the_identity():
    images = photos(height=32, width=32)
    out = random_resized_crop_flip(images, 32, np.random.default_rng(0), scale=(1, 1), ratio=(1, 1), flip=False)
    assert np.array_equal(out, images)


def test_resize_is_antialiased():
    # a one-pixel checkerboard shrunk 4x: an antialiased resize averages it to grey, nearest-neighbour sampling
    # (no antialiasing) keeps black and white
    board = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)[None, :, :, None].repeat(3, axis=-1)
    out = random_resized_crop_flip(board, 16, np.random.default_rng(0), scale=(1, 1), ratio=(1, 1), flip=False)
    assert np.abs(out.astype(int) - 128).max() < 20


def test_flips_are_mirror_images_of_the_unflipped_crops_half_the_time():
    images = photos(count=200, height=32, width=32)
    plain = random_resized_crop_flip(images, 24, np.random.default_rng(5), flip=False)
    flipped = random_resized_crop_flip(images, 24, np.random.default_rng(5), flip=True)
    mirrored = [np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain)]
    same = [np.array_equal(f, p) for f, p in zip(flipped, plain)]
    assert all(m or s for m, s in zip(mirrored, same))  # a flip is a left-right mirror, nothing else
    assert 0.35 < np.mean(mirrored) < 0.65


def test_grayscale_batches_keep_their_shape():
    images = photos()[..., 0]
    assert random_resized_crop_flip(images, 16, np.random.default_rng(0)).shape == (8, 16, 16)
    assert rand_augment(images, np.random.default_rng(0)).shape == images.shape


def test_same_seed_same_batch_other_seed_other_batch():
    images = photos()

    def recipe(seed):
        rng = np.random.default_rng([seed, 7, 0])
        crops = rand_augment(random_resized_crop_flip(images, 32, rng), rng)
        x = random_erasing(imagenet_normalise(torch.from_numpy(crops)), 0.25, rng)
        mixed, targets, lam, _ = mixup_cutmix(x, torch.arange(8) % 3, 3, rng)
        return mixed, targets, lam

    first, again, other = recipe(0), recipe(0), recipe(1)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]) and first[2] == again[2]
    assert not torch.equal(first[0], other[0])


def test_imagenet_normalise_uses_the_standard_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    pixel = torch.tensor([[[[124, 116, 104]]]], dtype=torch.uint8)
    expected = (torch.tensor([124, 116, 104]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(imagenet_normalise(pixel)[0, 0, 0], expected)
    with pytest.raises(ValueError, match="RGB"):
        imagenet_normalise(torch.zeros(1, 4, 4, 1, dtype=torch.uint8))


def test_every_randaugment_op_runs_and_the_magnitude_sets_its_strength():
    from PIL import Image

    picture = Image.fromarray(photos(count=1)[0])
    rng = np.random.default_rng(0)
    for name in RANDAUGMENT_OPS:
        for mode in ("RGB", "L"):
            result = apply_op(picture.convert(mode), name, 9.0, rng)
            assert result.size == picture.size and result.mode == mode
    # geometric and enhancement ops are the identity at magnitude 0 and change the image at 9
    base = np.asarray(picture).astype(int)
    for name in ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ContrastIncreasing", "SolarizeAdd"):
        weak = np.asarray(apply_op(picture, name, 0.0, rng)).astype(int)
        strong = np.asarray(apply_op(picture, name, 9.0, rng)).astype(int)
        assert np.abs(weak - base).max() <= 1, name
        assert np.abs(strong - base).mean() > 2, name
    # inc1 severities: posterize keeps 4 - int(0.9 * 4) = 1 bit at m 9, solarize inverts above 256 - 230 = 26
    assert set(np.unique(np.asarray(apply_op(picture, "PosterizeIncreasing", 9.0, rng)))) <= {0, 128}
    solarized = np.asarray(apply_op(picture, "SolarizeIncreasing", 9.0, rng)).astype(int)
    assert np.array_equal(solarized, np.where(base >= 26, 255 - base, base))
    # TranslateXRel at 10 moves by 0.45 of the width (18 of 40 pixels), either way, filling with the mean pixel
    square = Image.fromarray(photos(count=1, height=40, width=40)[0])
    grid = np.asarray(square).astype(int)
    for seed in range(4):
        shifted = np.asarray(apply_op(square, "TranslateXRel", 10.0, np.random.default_rng(seed))).astype(int)
        left = np.array_equal(shifted[:, :-18], grid[:, 18:]) and (shifted[:, -18:] == augment.FILL).all()
        right = np.array_equal(shifted[:, 18:], grid[:, :-18]) and (shifted[:, :18] == augment.FILL).all()
        assert left or right


def test_randaugment_applies_about_half_the_drawn_ops_and_none_with_zero_layers():
    images = photos(count=200, height=24, width=24)
    assert rand_augment(images, np.random.default_rng(0), layers=0) is images
    out = rand_augment(images, np.random.default_rng(0))
    unchanged = np.mean([np.array_equal(a, b) for a, b in zip(out, images)])
    # two ops at probability 1/2 each: 1/4 of images untouched, plus ops that do nothing to these images
    assert 0.15 < unchanged < 0.45


def test_random_erasing_replaces_one_box_with_noise_at_its_rate():
    images = torch.zeros(400, 32, 32, 3)
    out = random_erasing(images, 0.25, np.random.default_rng(0))
    erased = (out != 0).flatten(1).any(dim=1)
    assert 0.18 < erased.float().mean().item() < 0.32  # probability 0.25 per image
    assert torch.equal(images, torch.zeros_like(images))  # the input is not modified in place
    for image in out[erased]:
        rows, cols = torch.nonzero((image != 0).any(dim=-1), as_tuple=True)
        top, bottom, left, right = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        box = image[top:bottom, left:right]
        area = (bottom - top) * (right - left) / (32 * 32)
        assert 0.02 * 0.8 <= area <= 1 / 3 * 1.2
        assert (box != 0).float().mean() > 0.99  # one filled box, noise everywhere inside it
    noise = out[erased][out[erased] != 0]
    assert abs(noise.mean().item()) < 0.05 and abs(noise.std().item() - 1) < 0.05  # standard normal


def test_soft_targets_are_smoothed_one_hots():
    targets = soft_targets(torch.tensor([0, 2]), 4, 0.1)
    assert torch.allclose(targets.sum(1), torch.ones(2))
    assert torch.allclose(targets[0], torch.tensor([0.925, 0.025, 0.025, 0.025]))
    logits = torch.randn(2, 4)
    # the soft-target loss is torch's label-smoothed CE, and the plain CE at smoothing 0
    assert torch.allclose(
        soft_cross_entropy(logits, targets), F.cross_entropy(logits, torch.tensor([0, 2]), label_smoothing=0.1)
    )
    plain = soft_cross_entropy(logits, soft_targets(torch.tensor([0, 2]), 4, 0.0))
    assert torch.allclose(plain, F.cross_entropy(logits, torch.tensor([0, 2])))


def test_mixup_mixes_pixels_and_targets_with_the_same_lam():
    images, labels = torch.rand(6, 8, 8, 3), torch.tensor([0, 1, 2, 3, 4, 0])
    mixed, targets, lam, used_cutmix = mixup_cutmix(images, labels, 5, np.random.default_rng(0), cutmix_alpha=0.0)
    assert not used_cutmix and 0 < lam < 1
    assert torch.allclose(mixed, lam * images + (1 - lam) * images.flip(0))
    assert torch.allclose(targets.sum(1), torch.ones(6))
    smooth = soft_targets(labels, 5, 0.1)
    assert torch.allclose(targets, lam * smooth + (1 - lam) * smooth.flip(0))
    # lam ~ Beta(0.8, 0.8): mean 1/2, variance 1 / (4 (2 alpha + 1)) = 0.0962
    lams = [mixup_cutmix(images, labels, 5, np.random.default_rng(s), cutmix_alpha=0.0)[2] for s in range(3000)]
    assert abs(np.mean(lams) - 0.5) < 0.02 and abs(np.var(lams) - 1 / (4 * 2.6)) < 0.01


def test_cutmix_lam_is_the_unpasted_area_and_the_box_is_the_partners():
    images = torch.arange(4, dtype=torch.float32)[:, None, None, None].expand(4, 16, 20, 3).clone()
    labels = torch.tensor([0, 1, 2, 3])
    for seed in range(50):
        mixed, targets, lam, used_cutmix = mixup_cutmix(
            images, labels, 4, np.random.default_rng(seed), mixup_alpha=0.0, smoothing=0.0
        )
        assert used_cutmix
        for index in range(4):
            pasted = (mixed[index] == 3 - index).all(dim=-1)  # the partner is the reversed batch
            kept = (mixed[index] == index).all(dim=-1)
            assert (pasted | kept).all()
            assert math.isclose(1 - pasted.float().mean().item(), lam, abs_tol=1e-6)
            if pasted.any():  # a rectangle
                rows, cols = torch.nonzero(pasted, as_tuple=True)
                assert pasted[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all()
        assert torch.allclose(targets[0], torch.tensor([lam, 0, 0, 1 - lam]))


def test_cutmix_box_is_centred_at_a_uniform_point_with_sides_sqrt_one_minus_lam():
    rng = np.random.default_rng(0)
    top, bottom, left, right = cutmix_box(100, 100, 0.75, np.random.default_rng(0))
    cy, cx = int(rng.integers(0, 100)), int(rng.integers(0, 100))
    assert (top, bottom) == (max(cy - 25, 0), min(cy + 25, 100)) and (left, right) == (
        max(cx - 25, 0),
        min(cx + 25, 100),
    )


def test_the_switch_probability_picks_cutmix_half_the_time_and_both_off_is_identity():
    images, labels = torch.rand(4, 8, 8, 3), torch.tensor([0, 1, 2, 3])
    cut = [mixup_cutmix(images, labels, 4, np.random.default_rng(s))[3] for s in range(1000)]
    assert 0.45 < np.mean(cut) < 0.55
    same, targets, lam, _ = mixup_cutmix(images, labels, 4, np.random.default_rng(0), 0.0, 0.0, smoothing=0.0)
    assert same is images and lam == 1.0 and torch.equal(targets, F.one_hot(labels, 4).float())


def test_pad_crop_flip_is_unchanged():
    # CIFAR's recipe (used by uba) keeps its draws: same seed, same crops as before issue 15's additions
    images = photos(count=4, height=32, width=32)
    out = pad_crop_flip(images, 4, np.random.default_rng(0))
    assert out.shape == images.shape and hasattr(augment, "channel_stats")
