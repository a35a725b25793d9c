"""The standard image recipes as plain numpy on uint8 batches [B, H, W, C]: CIFAR's pad-crop-flip and per-channel
mean/std normalisation statistics measured on the training split (never on val or test); ImageNet's
random-resized crop + flip and mean/std; DeiT's recipe (RandAugment, random erasing, mixup / cutmix with soft,
label-smoothed targets). Evaluation is never augmented: callers apply these to training batches only.

Augmentation draws from a generator the caller seeds per (seed, step, rank), so a resumed run sees the same
crops as an uninterrupted one."""

from __future__ import annotations

import numpy as np
import torch


def pad_crop_flip(images: np.ndarray, pad: int, rng: np.random.Generator) -> np.ndarray:
    """Zero-pad each image by `pad` pixels, crop a uniformly placed H x W window, mirror it left-right with
    probability 1/2 (the CIFAR ResNet recipe, pad 4). images: uint8 [B, H, W] or [B, H, W, C]."""
    batch, height, width = images.shape[:3]
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)) + ((0, 0),) * (images.ndim - 3))
    dy = rng.integers(0, 2 * pad + 1, batch)
    dx = rng.integers(0, 2 * pad + 1, batch)
    rows = (dy[:, None] + np.arange(height))[:, :, None]  # [B, H, 1]
    cols = (dx[:, None] + np.arange(width))[:, None, :]  # [B, 1, W]
    out = padded[np.arange(batch)[:, None, None], rows, cols]
    flip = rng.random(batch) < 0.5
    out[flip] = out[flip, :, ::-1]
    return out


def channel_stats(images: np.ndarray, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images [N, H, W, C] on the [0, 1] scale, accumulated in float64 in
    chunks (50k CIFAR images would take 1.2 GB as one float64 array)."""
    channels = images.shape[-1]
    total, squares, count = np.zeros(channels), np.zeros(channels), 0
    for start in range(0, len(images), chunk):
        part = images[start : start + chunk].reshape(-1, channels).astype(np.float64) / 255.0
        total += part.sum(axis=0)
        squares += (part**2).sum(axis=0)
        count += len(part)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# ImageNet: random-resized crop + flip, mean/std normalisation, and DeiT's recipe (RandAugment, random erasing,
# mixup / cutmix, label smoothing). Per-image pieces draw from the caller's numpy generator, in a fixed order
# (every crop box, then every flip, then the RandAugment draws image by image), so one (seed, step, rank) gives
# one batch. The batch pieces (erasing, mixup / cutmix) work on float tensors [B, H, W, C] after normalisation,
# where timm applies them.
# ---------------------------------------------------------------------------------------------------------------

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision / timm IMAGENET_DEFAULT_MEAN, on the [0, 1] scale
IMAGENET_STD = (0.229, 0.224, 0.225)  # IMAGENET_DEFAULT_STD
CROP_SCALE = (0.08, 1.0)  # area fraction of the source a crop covers (torchvision / Inception)
CROP_RATIO = (3 / 4, 4 / 3)  # aspect ratio w / h of a crop
CROP_TRIES = 10  # torchvision's attempts before the centre-crop fallback


def imagenet_normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or [0, 255] float) RGB images [..., 3] -> (x / 255 - mean) / std with ImageNet's statistics."""
    if images.shape[-1] != 3:
        raise ValueError(f"ImageNet mean/std are per RGB channel: got {images.shape[-1]} channel(s)")
    mean = torch.tensor(IMAGENET_MEAN, device=images.device)
    std = torch.tensor(IMAGENET_STD, device=images.device)
    return (images.float() / 255.0 - mean) / std


def crop_box(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of one random-resized crop, torchvision's RandomResizedCrop.get_params: up to 10 tries of
    an area uniform in scale x H x W and an aspect ratio log-uniform in ratio, placed uniformly; if none fits, the
    largest centred box whose aspect ratio is clamped into ratio."""
    area = height * width
    log_ratio = (np.log(ratio[0]), np.log(ratio[1]))
    for _ in range(CROP_TRIES):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_ratio[0], log_ratio[1])))
        w = int(round(np.sqrt(target_area * aspect)))
        h = int(round(np.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return top, left, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def _to_pil(image: np.ndarray):
    from PIL import Image

    return Image.fromarray(image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image)


def _from_pil(picture, like: np.ndarray) -> np.ndarray:
    array = np.asarray(picture, dtype=np.uint8)
    return array[..., None] if like.ndim == 3 and array.ndim == 2 else array


def random_resized_crop_flip(
    images: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = CROP_SCALE,
    ratio: tuple[float, float] = CROP_RATIO,
    flip: bool = True,
) -> np.ndarray:
    """ImageNet's training crop: per image a crop_box, resized to size x size (bicubic, antialiased: PIL's
    resize widens its filter when it shrinks; DeiT's interpolation), then mirrored left-right with probability
    1/2. images: uint8 [B, H, W] or [B, H, W, C]; returns uint8 [B, size, size(, C)].

    The crops are drawn from the image as it is stored, not from the original photograph: prepare_imagefolder
    (pipelines/datasets/images.py) stores every split shorter-side-resized to `resize` and centre-cropped to
    `size`, so at size 224 the crop sees the central 224 x 224 of the 256-side image (about 77% of a 4:3 photo's
    area) and upsamples small crops from 224 pixels, not from the full-resolution photo. Where that matters,
    prepare the training images larger (e.g. `--set size=256` or more, or the raw side) under its own dataset
    name: this function accepts any H x W and always outputs size x size."""
    from PIL import Image

    batch, height, width = images.shape[:3]
    boxes = [crop_box(height, width, rng, scale, ratio) for _ in range(batch)]
    flips = rng.random(batch) < 0.5 if flip else np.zeros(batch, dtype=bool)
    out = np.empty((batch, size, size) + images.shape[3:], dtype=np.uint8)
    for index, ((top, left, h, w), mirrored) in enumerate(zip(boxes, flips)):
        box = np.ascontiguousarray(images[index, top : top + h, left : left + w])  # crop, then resize (torchvision)
        crop = _from_pil(_to_pil(box).resize((size, size), resample=Image.Resampling.BICUBIC), images[index])
        out[index] = crop[:, ::-1] if mirrored else crop
    return out


# RandAugment as timm's rand-m9-mstd0.5-inc1 (DeiT): 2 ops per image drawn uniformly with replacement from the 15
# "increasing" ops, each applied with probability 1/2 at a magnitude drawn from N(9, 0.5^2) clipped to [0, 10];
# signed ops take a random sign. Geometric ops fill with the ImageNet mean pixel and resample bicubically.
RANDAUGMENT_OPS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
MAX_LEVEL = 10.0
FILL = tuple(round(255 * m) for m in IMAGENET_MEAN)  # timm's img_mean fill: (124, 116, 104)


def _signed(value: float, rng: np.random.Generator) -> float:
    return -value if rng.random() < 0.5 else value


def apply_op(picture, name: str, magnitude: float, rng: np.random.Generator):
    """One RandAugment op on a PIL image at magnitude in [0, 10] (timm's level functions)."""
    from PIL import Image, ImageEnhance, ImageOps

    level = magnitude / MAX_LEVEL
    fill = FILL if picture.mode == "RGB" else FILL[0]
    affine = {"resample": Image.Resampling.BICUBIC, "fillcolor": fill}
    if name == "AutoContrast":
        return ImageOps.autocontrast(picture)
    if name == "Equalize":
        return ImageOps.equalize(picture)
    if name == "Invert":
        return ImageOps.invert(picture)
    if name == "Rotate":
        return picture.rotate(_signed(level * 30.0, rng), resample=Image.Resampling.BICUBIC, fillcolor=fill)
    if name == "PosterizeIncreasing":
        bits = 4 - int(level * 4)  # stronger = fewer bits kept
        return picture if bits >= 8 else ImageOps.posterize(picture, bits)
    if name == "SolarizeIncreasing":
        return ImageOps.solarize(picture, 256 - int(level * 256))  # stronger = lower threshold
    if name == "SolarizeAdd":
        add, pixels = int(level * 110), np.asarray(picture).astype(np.int64)
        return Image.fromarray(np.where(pixels < 128, np.minimum(pixels + add, 255), pixels).astype(np.uint8))
    enhancers = {
        "ColorIncreasing": ImageEnhance.Color,
        "ContrastIncreasing": ImageEnhance.Contrast,
        "BrightnessIncreasing": ImageEnhance.Brightness,
        "SharpnessIncreasing": ImageEnhance.Sharpness,
    }
    if name in enhancers:
        return enhancers[name](picture).enhance(1.0 + _signed(level * 0.9, rng))
    width, height = picture.size
    transforms = {
        "ShearX": lambda s: (1, s, 0, 0, 1, 0),
        "ShearY": lambda s: (1, 0, 0, s, 1, 0),
        "TranslateXRel": lambda s: (1, 0, s * width, 0, 1, 0),
        "TranslateYRel": lambda s: (1, 0, 0, 0, 1, s * height),
    }
    if name in transforms:
        amount = _signed(level * (0.3 if name.startswith("Shear") else 0.45), rng)
        return picture.transform(picture.size, Image.Transform.AFFINE, transforms[name](amount), **affine)
    raise ValueError(f"unknown RandAugment op {name!r} (known: {', '.join(RANDAUGMENT_OPS)})")


def rand_augment(
    images: np.ndarray,
    rng: np.random.Generator,
    layers: int = 2,
    magnitude: float = 9.0,
    magnitude_std: float = 0.5,
    prob: float = 0.5,
) -> np.ndarray:
    """timm's RandAugment (rand-m{magnitude}-mstd{magnitude_std}-inc1, n = layers) on uint8 [B, H, W(, C)].

    All 15 of timm's increasing-severity ops are implemented (with PIL); none is left out. Differences from timm:
    the geometric ops always resample bicubically (DeiT's interpolation; timm's default picks bilinear or
    bicubic at random), and the draws come from the numpy generator passed in, not Python's global `random`."""
    if layers == 0:
        return images
    out = np.empty_like(images)
    for index in range(len(images)):
        picture = _to_pil(images[index])
        for op in rng.integers(0, len(RANDAUGMENT_OPS), layers):
            if rng.random() >= prob:
                continue
            level = magnitude if magnitude_std <= 0 else rng.normal(magnitude, magnitude_std)
            picture = apply_op(picture, RANDAUGMENT_OPS[op], float(np.clip(level, 0.0, MAX_LEVEL)), rng)
        out[index] = _from_pil(picture, images[index])
    return out


def erase_box(
    height: int, width: int, rng: np.random.Generator, area: tuple[float, float] = (0.02, 1 / 3), ratio: float = 0.3
) -> tuple[int, int, int, int] | None:
    """(top, left, h, w) of one random-erasing box (timm's RandomErasing: area fraction uniform in `area`, aspect
    log-uniform in (ratio, 1/ratio), up to 10 tries, the box strictly inside the image), or None."""
    for _ in range(10):
        target = rng.uniform(*area) * height * width
        aspect = np.exp(rng.uniform(np.log(ratio), np.log(1 / ratio)))
        h, w = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if h < height and w < width:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return None


def random_erasing(images: torch.Tensor, prob: float, rng: np.random.Generator) -> torch.Tensor:
    """DeiT's random erasing (timm, mode 'pixel', one box): with probability `prob` per image, a box is replaced
    by standard-normal noise per pixel and channel. images: normalised float [B, H, W, C] (noise of the
    normalised scale); returns a new tensor."""
    out = images.clone()
    batch, height, width = images.shape[:3]
    for index in range(batch):
        if rng.random() >= prob:
            continue
        box = erase_box(height, width, rng)
        if box is None:
            continue
        top, left, h, w = box
        noise = rng.standard_normal((h, w) + tuple(images.shape[3:]))
        out[index, top : top + h, left : left + w] = torch.from_numpy(noise).to(out.dtype).to(out.device)
    return out


def soft_targets(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing: 1 - smoothing + smoothing / K on the label, smoothing / K elsewhere
    (timm's mixup_target and LabelSmoothingCrossEntropy; torch's label_smoothing)."""
    off = smoothing / num_classes
    targets = torch.full((len(labels), num_classes), off, device=labels.device)
    return targets.scatter_(1, labels.long()[:, None], 1.0 - smoothing + off)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum_k targets_k log softmax(logits)_k (timm's SoftTargetCrossEntropy)."""
    return -(targets * torch.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the pasted box (timm's rand_bbox): sides sqrt(1 - lam) x H, W around a
    uniform centre, clipped to the image."""
    cut = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut), int(width * cut)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    top, bottom = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, height)
    left, right = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, width)
    return int(top), int(bottom), int(left), int(right)


def mixup_cutmix(
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    rng: np.random.Generator,
    mixup_alpha: float = 0.8,
    cutmix_alpha: float = 1.0,
    switch_prob: float = 0.5,
    smoothing: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor, float, bool]:
    """timm's Mixup in batch mode (DeiT: mixup 0.8, cutmix 1.0, switch 0.5, every batch): each image is mixed
    with the batch reversed (x.flip(0)). Cutmix (with probability switch_prob when both are on) pastes a box of
    the partner and sets lam to the unpasted area fraction; mixup takes lam ~ Beta(alpha, alpha) and
    x = lam x + (1 - lam) x_partner. Targets are lam * smoothed(y) + (1 - lam) * smoothed(y_partner), so each
    row sums to 1. images: float [B, H, W(, C)]; returns (images, soft targets [B, K], lam, cutmix used)."""
    targets = soft_targets(labels, num_classes, smoothing)
    if mixup_alpha <= 0 and cutmix_alpha <= 0:
        return images, targets, 1.0, False
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < switch_prob)
    lam = float(rng.beta(cutmix_alpha, cutmix_alpha) if use_cutmix else rng.beta(mixup_alpha, mixup_alpha))
    partner = images.flip(0)
    if use_cutmix:
        height, width = images.shape[1:3]
        top, bottom, left, right = cutmix_box(height, width, lam, rng)
        images = images.clone()
        images[:, top:bottom, left:right] = partner[:, top:bottom, left:right]
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)  # timm's correct_lam
    else:
        images = images * lam + partner * (1.0 - lam)
    return images, targets * lam + targets.flip(0) * (1.0 - lam), lam, use_cutmix
