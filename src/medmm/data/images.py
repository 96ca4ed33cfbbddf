"""Chest X-ray images, read lazily at load time (never all in memory).

The canonical ``images`` table holds a path relative to the raw root it was prepared from
(MIMIC-CXR-JPG: ``files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg``); pixels are read only when an item
is asked for:

    cfg = ImageConfig(size=224)
    x = load_image(root / path, cfg)                     # (H, W) float32
    ds = ImageSet(root, dataset.table("images"), cfg)    # a map-style torch dataset
    loader = DataLoader(ds, batch_size=32, collate_fn=collate_images)

Loading: open with Pillow, decode a JPEG at the smallest DCT scale that is still at least the
target size (`Image.draft`: a 3,000 px radiograph decodes at 1/8 for 224 px, several times
faster), convert to 8-bit grayscale ("L"), resize, then ``x = (pixel / 255 - mean) / std``.
``resize="crop"`` (default, the CLIP / BiomedCLIP convention) scales the shorter side to the
target and centre-crops; ``resize="stretch"`` scales both sides to (H, W), changing the aspect.

A file that cannot be decoded (corrupt, truncated, not an image) or is missing raises
`ImageLoadError`, a ValueError naming the file. `ImageSet(..., on_error="skip")` instead turns
such an item into a skip: `collate_images` leaves it out of the batch and lists it under
``batch["skipped"]`` as (image_id, message), so the caller counts skips exactly even with
DataLoader worker processes (a counter inside the dataset would be per process).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

RESIZE_MODES = ("crop", "stretch")
ON_ERROR = ("raise", "skip")


class ImageLoadError(ValueError):
    """An image file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class ImageConfig:
    """How an image becomes an array. `size`: an int (square) or (height, width)."""

    size: int | tuple[int, int] = 224
    resize: str = "crop"
    mean: float = 0.0          # defaults give x in [0, 1]
    std: float = 1.0

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"ImageConfig.resize must be one of {RESIZE_MODES}, got {self.resize!r}")
        h, w = self.hw
        if h < 1 or w < 1:
            raise ValueError(f"ImageConfig.size must be positive, got {self.size!r}")
        if not self.std > 0:
            raise ValueError(f"ImageConfig.std must be > 0, got {self.std!r}")

    @property
    def hw(self) -> tuple[int, int]:
        if isinstance(self.size, int):
            return self.size, self.size
        h, w = self.size
        return int(h), int(w)


def load_image(path: str | Path, cfg: ImageConfig | None = None) -> np.ndarray:
    """Read one image file -> a (H, W) float32 array, normalised as `cfg` says."""
    from PIL import Image, UnidentifiedImageError

    cfg = cfg or ImageConfig()
    path = Path(path)
    h, w = cfg.hw
    try:
        with Image.open(path) as img:
            if cfg.resize == "crop":
                s = max(h, w)
                img.draft("L", (s, s))            # JPEG only; a no-op for other formats
            else:
                img.draft("L", (w, h))
            img = img.convert("L")                # decodes: a truncated file fails here
            if cfg.resize == "crop":
                img = _resize_shorter_and_crop(img, h, w)
            else:
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32)
    except FileNotFoundError as e:
        raise ImageLoadError(f"{path}: image file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ImageLoadError(f"{path}: cannot read the image ({e}); the file is corrupt, truncated or "
                             f"not an image") from e
    x = arr / 255.0
    if cfg.mean != 0.0 or cfg.std != 1.0:
        x = (x - cfg.mean) / cfg.std
    return x.astype(np.float32, copy=False)       # (H, W)


def _resize_shorter_and_crop(img, h: int, w: int):
    from PIL import Image

    iw, ih = img.size
    scale = max(h / ih, w / iw)                   # the shorter side (relative to the target) fits
    nw, nh = max(w, round(iw * scale)), max(h, round(ih * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    left, top = (nw - w) // 2, (nh - h) // 2
    return img.crop((left, top, left + w, top + h))


class ImageSet:
    """A map-style dataset over rows of the ``images`` table (torch `Dataset` protocol).

    Item i is ``{"image": tensor (1, H, W) float32, "image_id": str, "study_id": int}``; with
    ``on_error="skip"`` an unreadable file gives ``{"image": None, "image_id": ..., "study_id": ...,
    "error": message}`` instead of raising `ImageLoadError`. Only the id / path columns are held
    in memory; pixels are read in `__getitem__`.
    """

    def __init__(self, root: str | Path, images: pl.DataFrame, cfg: ImageConfig | None = None,
                 on_error: str = "raise"):
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        missing = {"image_id", "study_id", "path"} - set(images.columns)
        if missing:
            raise ValueError(f"ImageSet: the images frame lacks columns {sorted(missing)}")
        self.root = Path(root)
        self.cfg = cfg or ImageConfig()
        self.on_error = on_error
        self.image_id: list[str] = images["image_id"].to_list()
        self.study_id: list[int] = images["study_id"].to_list()
        self.path: list[str] = images["path"].to_list()

    def __len__(self) -> int:
        return len(self.path)

    def __getitem__(self, i: int) -> dict[str, Any]:
        import torch

        item: dict[str, Any] = {"image_id": self.image_id[i], "study_id": self.study_id[i]}
        try:
            x = load_image(self.root / self.path[i], self.cfg)
        except ImageLoadError as e:
            if self.on_error == "raise":
                raise
            return {**item, "image": None, "error": str(e)}
        return {**item, "image": torch.from_numpy(x).unsqueeze(0)}   # (1, H, W)


def collate_images(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack the loaded items of a batch; skipped ones are listed, not stacked.

    Returns ``{"image": (B, 1, H, W), "image_id": [B], "study_id": (B,), "skipped":
    [(image_id, message), ...]}``; B may be 0 when every item of the batch was skipped, in
    which case "image" is absent.
    """
    import torch

    ok = [it for it in items if it["image"] is not None]
    batch: dict[str, Any] = {
        "image_id": [it["image_id"] for it in ok],
        "study_id": torch.tensor([it["study_id"] for it in ok], dtype=torch.long),
        "skipped": [(it["image_id"], it["error"]) for it in items if it["image"] is None],
    }
    if ok:
        batch["image"] = torch.stack([it["image"] for it in ok])     # (B, 1, H, W)
    return batch


__all__ = ["ImageConfig", "ImageLoadError", "ImageSet", "collate_images", "load_image"]
