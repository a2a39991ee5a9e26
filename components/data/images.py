"""Encoded image bytes: which files are images, decoding them to RGB (and PNG masks), reference
statistics.

Decoding uses ``torchvision.io.decode_image`` (libjpeg-turbo, libpng, libwebp, GIF; it
detects truncated files) and falls back to Pillow for the formats torchvision does not read (BMP,
TIFF) and for animated WebP. An animated GIF or WebP and a multi-page TIFF give their first frame.
Greyscale, palette and RGBA images all come out as 3-channel RGB (alpha is dropped), a 16-bit
PNG or TIFF (microscopy, medical scans) keeps its 16 bits, and camera photos are turned upright by
their EXIF orientation. torchvision 0.29 announces that its
decoders will move to TorchCodec (which needs FFmpeg on the machine); until then the pinned
torchvision < 0.30 decodes, and its per-call deprecation warning is silenced here.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

warnings.filterwarnings(
    "ignore", message="The image decoding and encoding capabilities of TorchVision are deprecated"
)

# File suffixes read as images (lower case); anything else in a class folder is not an image.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# ImageNet's per-channel statistics of RGB pixels in [0, 1]: the normalisation every
# torchvision ImageNet-pretrained trunk was trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# Pillow modes whose values do not fit 16 bits: converting them to RGB would clip them.
_WIDE_MODES = {"I": "32-bit integer", "F": "32-bit floating-point"}


class ImageDecodeError(ValueError):
    """Bytes that are not a readable image (corrupt, truncated, empty or another format)."""


def decode_rgb(data: bytes | bytearray | memoryview) -> torch.Tensor:
    """Decode one encoded image to an RGB tensor ``(3, H, W)``: uint8, or uint16 for a 16-bit
    PNG or TIFF (the transforms' ``ToDtype(scale=True)`` scales either to [0, 1]).

    Raises:
        ImageDecodeError: The bytes are empty, truncated, corrupt or not an image format that
            torchvision or Pillow reads; the message says which.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    from torchvision.io import ImageReadMode, decode_image

    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        image = decode_image(buffer, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        return image[0] if image.ndim == 4 else image  # an animated GIF: its first frame
    except RuntimeError as err:
        if _is_unsupported_format(err) or _is_animated(err):
            return _decode_with_pillow(data)
        raise ImageDecodeError(_short(err)) from err


def decode_mask(data: bytes | bytearray | memoryview) -> torch.Tensor:
    """Decode one single-channel PNG mask (a label map or a binary mask) to uint8 ``(H, W)``.

    8-bit greyscale, 1-bit and grey-palette PNGs are read as stored (a 1-bit PNG's set pixels
    are 255); 16-bit ones only when every value fits in 8 bits.

    Raises:
        ImageDecodeError: The bytes are not a readable PNG, it has colour or alpha channels, or
            a label above 255.
    """
    if len(data) == 0:
        raise ImageDecodeError("empty file (0 bytes)")
    from torchvision.io import ImageReadMode, decode_png

    buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    try:
        mask = decode_png(buffer, mode=ImageReadMode.UNCHANGED)
    except RuntimeError as err:
        raise ImageDecodeError(f"not a readable PNG: {_short(err)}") from err
    if mask.shape[0] != 1:
        raise ImageDecodeError(
            f"a mask must be a single-channel (greyscale) PNG, this one has {mask.shape[0]} "
            "channels"
        )
    if mask.dtype != torch.uint8:
        if int(mask.max()) > 255:
            raise ImageDecodeError(f"mask labels go up to {int(mask.max())}; at most 255 fit")
        mask = mask.to(torch.uint8)
    return mask[0]


def _is_unsupported_format(err: RuntimeError) -> bool:
    """torchvision says "Unsupported image file" for formats it does not know (BMP, TIFF...)."""
    return "Unsupported image file" in str(err)


def _is_animated(err: RuntimeError) -> bool:
    """torchvision refuses animated WebP; Pillow reads its first frame."""
    return "Animated webp" in str(err)


def _decode_with_pillow(data: bytes | bytearray | memoryview) -> torch.Tensor:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            upright = ImageOps.exif_transpose(image)  # the first frame or page
            if upright.mode in _WIDE_MODES:
                raise ImageDecodeError(
                    f"{_WIDE_MODES[upright.mode]} pixels (mode {upright.mode}); save it with "
                    "8- or 16-bit channels"
                )
            if upright.mode.startswith("I;16"):  # 16-bit greyscale: every bit kept
                grey = torch.from_numpy(np.asarray(upright).astype(np.uint16))
                return grey.unsqueeze(0).expand(3, -1, -1).contiguous()
            # convert loads every pixel: a truncated file raises here
            rgb = upright.convert("RGB")
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as err:
        raise ImageDecodeError("not an image (unknown format)") from err
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageDecodeError(f"corrupt or truncated image: {err}") from err
    pixels = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
    return pixels.reshape(rgb.height, rgb.width, 3).permute(2, 0, 1).contiguous()


def _short(err: Exception) -> str:
    """torchvision's message without its C++ source location (``file.cpp:12, message``)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    head, sep, tail = text.rpartition(".cpp:")
    if sep:
        text = tail.split(",", 1)[-1].strip() or text
    return text
