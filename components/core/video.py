"""Raw video for the video data kind and for components that judge videos: reading a clip (a .npy array, or a
container through PyAV), resampling it to a frame rate by its timestamps, scaling to cover a size then
centre-cropping, and loading user code (a VAE, a video generator, a judge) named as 'module:attr'."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from components.core.errors import ConfigError, DataError


def load_factory(spec: str, option: str = "vae_factory", owner: str = "video-folder") -> Callable[..., Any]:
    """'package.module:attr.path' or '/path/to/file.py:attr.path' -> the callable it names: how user code (a
    video VAE, a video generator, a judge) plugs in. `owner` and `option` name the setting in error messages."""
    target, sep, attribute = spec.partition(":")
    if not sep or not target or not attribute:
        raise ConfigError(
            f"{owner}: option {option} '{spec}' must look like 'module:callable' or '/path/file.py:callable'"
        )
    try:
        if target.endswith(".py"):
            path = Path(target).expanduser()
            if not path.is_file():
                raise DataError(f"{owner}: {option} file {path} does not exist")
            module_spec = importlib.util.spec_from_file_location(f"_paperzoo_user_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as error:
        raise DataError(
            f"{owner}: cannot import the {'VAE ' if option == 'vae_factory' else ''}code '{target}' ({error}) "
            f"named by {option}: install it or check it out on PYTHONPATH (e.g. the Pyramid-Flow repository's "
            f"video_vae package for a VAE)"
        ) from None
    factory: Any = module
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise DataError(f"{owner}: '{target}' has no attribute '{attribute}' (option {option})")
        factory = getattr(factory, part)
    if not callable(factory):
        raise DataError(f"{owner}: {option} '{spec}' is not callable")
    return factory


def resample_frames(stream: Iterable[tuple[float | None, Any]], fps: float, count: int) -> list[Any]:
    """(time in seconds, frame) pairs of a decoded stream -> the frames on screen at 0, 1/fps, 2/fps, ... from
    the first frame's time, `count` of them at most (a faster source drops frames, a slower one repeats them);
    fps 0 keeps every decoded frame. A frame without a timestamp (a broken stream) gets the previous one's."""
    kept: list[Any] = []
    shown, start, last = None, None, None
    for time, frame in stream:
        if len(kept) == count:
            break
        if fps <= 0:
            kept.append(frame)
            continue
        time = (last if last is not None else 0.0) if time is None else float(time)
        start = time if start is None else start
        while shown is not None and len(kept) < count and start + len(kept) / fps < time - 1e-9:
            kept.append(shown)  # the previous frame is still on screen at this output time
        shown, last = frame, time
    if fps > 0 and shown is not None and len(kept) < count:
        kept.append(shown)
    return kept


def cover_and_crop(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [h, w, 3] -> [height, width, 3]: scaled (bicubic, aspect kept) until it covers height x width, then
    centre-cropped, so a 16:9 source is never squashed to the paper's 5:3 (the crop offset rounds as
    torchvision's center_crop does). The paper's data code is not in the spec: its crop is an assumption."""
    from PIL import Image

    h, w = frame.shape[:2]
    scale = max(height / h, width / w)
    size = (max(width, round(w * scale)), max(height, round(h * scale)))  # PIL's (width, height)
    image = Image.fromarray(frame)
    if size != (w, h):
        image = image.resize(size, Image.Resampling.BICUBIC)
    left, top = int(round((size[0] - width) / 2)), int(round((size[1] - height) / 2))
    return np.asarray(image.crop((left, top, left + width, top + height)))


def read_clip(path: Path, frames: int, height: int, width: int, fps: float = 0) -> np.ndarray:
    """One clip as float32 [frames, 3, height, width] in [0, 1]: the first `frames` frames (resampled to `fps`
    by their timestamps for a container; a .npy clip has none and is taken as already at that rate), resized
    if needed."""
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DataError(f"cannot read clip {path} ({error}): fix or remove the file") from None
        if array.ndim != 4 or array.shape[-1] != 3 or array.dtype != np.uint8:
            raise DataError(f"clip {path}: a .npy clip must be uint8 [T, H, W, 3], got {array.dtype} {array.shape}")
    else:
        try:
            import av
        except ImportError:
            raise DataError(
                f"reading {path.suffix} videos needs PyAV (pip install av), or convert the clips to "
                f".npy uint8 [T, H, W, 3] arrays"
            ) from None
        try:
            with av.open(str(path)) as container:
                timed = ((frame.time, frame) for frame in container.decode(video=0))
                decoded = [frame.to_ndarray(format="rgb24") for frame in resample_frames(timed, fps, frames)]
        except (OSError, ValueError, av.error.FFmpegError) as error:
            raise DataError(f"cannot decode video {path} ({error}): fix or remove the file") from None
        array = np.stack(decoded) if decoded else np.zeros((0, 1, 1, 3), np.uint8)
    if len(array) < frames:
        at = f" at {fps:g} fps" if fps > 0 and path.suffix.lower() != ".npy" else ""
        raise DataError(f"clip {path} has {len(array)} frames{at}, fewer than the {frames} asked (option frames)")
    array = array[:frames]
    if array.shape[1:3] != (height, width):
        array = np.stack([cover_and_crop(frame, height, width) for frame in array])
    # channels first while still uint8 (a quarter of the bytes to move), then scaled in place
    pixels = np.ascontiguousarray(array.transpose(0, 3, 1, 2)).astype(np.float32)
    pixels *= np.float32(1 / 255)
    return pixels
