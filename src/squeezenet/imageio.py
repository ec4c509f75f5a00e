"""Image decoding shared by data loading, ``predict``, ``eval`` and the torch-free
serving path (numpy and Pillow only; no torch import).

One function turns a file (or bytes) into the uint8 array a model was trained on, so
training, evaluation and every inference path see the same pixels:

- the real bit depth is respected: 16-bit images (``I;16``, ``I``) are scaled by
  65535, not clipped at 255, and float images (``F``) in [0, 1] are scaled by 255;
- palette, CMYK, YCbCr, HSV and alpha images are converted to L or RGB as Pillow
  defines it (alpha is dropped, as torchvision's ImageFolder loader does); LAB goes
  through a colour-managed LAB -> sRGB transform;
- decompression bombs (more than ``MAX_PIXELS`` pixels), truncated files and
  non-images raise :class:`SqueezeNetError` with the path, never a Pillow traceback;
- the EXIF orientation tag is applied (:func:`_upright`), so a phone photo stored
  sideways is seen upright, as a photo viewer or a browser shows it; a damaged tag
  leaves the pixels as stored;
- resizing is Pillow's bilinear filter (antialiased when shrinking), the same in every
  path.
"""

from __future__ import annotations

import io
import os
import re
import struct
import warnings

import numpy as np

from .errors import SqueezeNetError, TooLarge

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

MAX_PIXELS = 89_478_485  # Pillow's own default limit (about 0.25 GB at 24 bit)


def _name(src) -> str:
    return str(src) if isinstance(src, (str, os.PathLike)) else "<uploaded image>"


def _to_8bit(im):
    """Map high-bit-depth modes to 8 bits by their real range."""
    from PIL import Image

    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.rint(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        scale = 255.0 if a.size and a.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.rint(a * scale), 0, 255).astype(np.uint8), "L")
    if im.mode == "PA" or (im.mode == "P" and "transparency" in im.info):
        return im.convert("RGBA")
    if im.mode == "LAB":  # CIE L*a*b*: a colour-managed conversion, as Pillow has no direct one
        from PIL import ImageCms

        lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
        return ImageCms.applyTransform(im, ImageCms.buildTransform(lab, srgb, "LAB", "RGB"))
    return im


def _upright(im):
    """``im`` turned as its EXIF orientation tag (values 2-8) says it is displayed. Pillow's
    ``exif_transpose``; an unreadable tag keeps the stored pixels (what a viewer that
    cannot parse it shows), never refuses an image whose pixels are fine."""
    from PIL import ExifTags, ImageOps

    try:
        if im.getexif().get(ExifTags.Base.Orientation, 1) in (2, 3, 4, 5, 6, 7, 8):
            return ImageOps.exif_transpose(im)
    except Exception:  # damaged EXIF: the pixels themselves decoded
        pass
    return im


def open_image(src, mode: str = "RGB", upright: bool = True):
    """Open ``src`` (a path, bytes or a binary file object) fully and return a Pillow
    image in ``mode`` ("L" or "RGB"), or raise a one-line :class:`SqueezeNetError`.
    ``upright=False`` leaves the pixels as stored, ignoring the EXIF orientation tag, as
    torchvision's and timm's ImageNet evaluations read images (``Image.open(f).convert``)."""
    from PIL import Image, UnidentifiedImageError

    name = _name(src)
    if isinstance(src, (bytes, bytearray, memoryview)):
        src = io.BytesIO(bytes(src))
    try:
        with warnings.catch_warnings():  # damaged-metadata chatter is not the user's concern
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(src) as im:
                if im.width * im.height > MAX_PIXELS:
                    raise Image.DecompressionBombError(f"{im.width}x{im.height}")
                im.load()
                if im.width < 1 or im.height < 1:
                    raise ValueError("image has no pixels")
                return _to_8bit(_upright(im) if upright else im).convert(mode)
    except FileNotFoundError as e:
        raise SqueezeNetError(f"image not found: '{name}'") from e
    except IsADirectoryError as e:
        raise SqueezeNetError(f"'{name}' is a folder, not an image") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"image '{name}' is too large ({str(e).split(' ')[0]} pixels exceed the "
                              f"{MAX_PIXELS:,}-pixel limit against decompression bombs); downscale it first") from e
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, TypeError, EOFError, KeyError,
            IndexError, struct.error, MemoryError, ZeroDivisionError) as e:
        msg = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        msg = re.sub(r"<_io\.BytesIO object at 0x[0-9a-f]+>", "the upload", msg)
        raise SqueezeNetError(f"cannot read image '{name}': corrupt or not an image ({msg})") from e


def resize_array(a: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 (C, H, W) array to (C, size, size) with Pillow's bilinear filter,
    the resize every path uses."""
    from PIL import Image

    if a.shape[1:] == (size, size):
        return a
    if a.shape[0] == 1:
        return np.asarray(Image.fromarray(a[0], "L").resize((size, size), Image.BILINEAR))[None]
    im = Image.fromarray(np.ascontiguousarray(a.transpose(1, 2, 0)), "RGB").resize((size, size), Image.BILINEAR)
    return np.asarray(im).transpose(2, 0, 1)


def _open_for(src, channels: int):
    if channels not in (1, 3):
        raise SqueezeNetError(f"models take 1- or 3-channel images, this one expects {channels}")
    return open_image(src, "L" if channels == 1 else "RGB")


def _chw(im) -> np.ndarray:
    """A Pillow L or RGB image as a uint8 (C, H, W) array."""
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def image_to_array(src, channels: int, size: int | None) -> np.ndarray:
    """Decode ``src`` into a uint8 (C, H, W) array with ``channels`` (1 or 3), resized to
    ``size`` x ``size`` when given."""
    a = _chw(_open_for(src, channels))
    return np.ascontiguousarray(resize_array(a, size) if size else a)


def eval_resize(size: int) -> int:
    """The shorter side a large-image model's evaluation resizes to before cropping the
    centre ``size`` x ``size``: 256/224 of it, as ImageNet's evaluation does."""
    return int(size * 256 / 224)


def resize_crop_array(src, channels: int, size: int) -> np.ndarray:
    """Decode ``src``, resize its shorter side to :func:`eval_resize` (Pillow bilinear) and
    keep the centre ``size`` x ``size``: exactly torchvision's ``Resize(eval_resize(size))``
    + ``CenterCrop(size)`` on a Pillow image, which evaluates large-image models."""
    from PIL import Image

    im = _open_for(src, channels)
    w, h = im.size
    r = eval_resize(size)
    nw, nh = (r, int(r * h / w)) if w <= h else (int(r * w / h), r)  # torchvision's output size for Resize(int)
    if (nw, nh) != (w, h):
        im = im.resize((nw, nh), Image.BILINEAR)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    return np.ascontiguousarray(_chw(im.crop((left, top, left + size, top + size))))


def resize_rule(spec) -> dict:
    """How :func:`model_input` resizes for ``spec``, for clients that preprocess themselves
    (the server's model metadata): the EXIF orientation applied, Pillow bilinear throughout,
    then (x / 255 - mean) / std."""
    first = {"orientation": "EXIF tag applied first"}
    if spec.small:
        return {"mode": "whole image to input_size x input_size", **first}
    return {"mode": "shorter side to shorter_side, then the centre input_size x input_size",
            "shorter_side": eval_resize(spec.input_size), **first}


def model_input(src, spec) -> np.ndarray:
    """The uint8 (C, H, W) array a model with data spec ``spec`` is given for an image, as
    its evaluation prepares it: a small-image model's whole image resized to its input
    size (how its training images were decoded); a large-image model's shorter side
    resized and its centre cropped (:func:`resize_crop_array`; it trained on random crops).
    ``predict``, ``serve`` and ``deploy.load`` all go through here."""
    if spec.small:
        return image_to_array(src, spec.channels, spec.input_size)
    return resize_crop_array(src, spec.channels, spec.input_size)


def normalize_array(x_uint8: np.ndarray, mean, std) -> np.ndarray:
    """uint8 (B, C, H, W) -> float32 ((x / 255) - mean) / std, as training normalises."""
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return ((x_uint8.astype(np.float32) / np.float32(255.0)) - m) / s
