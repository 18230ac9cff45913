"""Decoding of image and mask files (PNG, JPEG, TIFF) into NumPy arrays.

Images come back as ``(H, W, C)`` arrays of ``uint8`` or ``uint16``; masks as
``(H, W)`` ``uint8`` arrays with values {0, 1}, where any label above 0 is
foreground (0/1, 0/255 and instance-label masks all work).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from segcore.data.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
TIFF_SUFFIXES = (".tif", ".tiff")
# Errors that tifffile and its codecs raise for corrupt, truncated or undecodable files:
# a truncated zlib stream raises zlib.error, a cut-off tag table struct.error.
TIFF_ERRORS = (
    OSError,
    ValueError,
    IndexError,
    KeyError,
    RuntimeError,
    struct.error,
    zlib.error,
    tifffile.TiffFileError,
)


def _tiff_error_message(path: Path, error: Exception) -> str:
    if "imagecodecs" in str(error):
        # tifffile decodes only uncompressed, zlib and PackBits data without the imagecodecs package.
        return (
            f"cannot decode TIFF file {path}: {error}. Install the imagecodecs package, "
            "or save the file uncompressed or with zlib compression."
        )
    return f"cannot read TIFF file {path}: {error}. The file is unreadable or truncated; replace or remove it."


def count_pages(path: Path) -> int:
    """Return the number of pages of a TIFF file."""
    try:
        with tifffile.TiffFile(path) as tif:
            return len(tif.pages)
    except TIFF_ERRORS as error:
        raise DataError(_tiff_error_message(path, error)) from error


def _read_tiff_page(path: Path, page: int) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tif:
            pages = len(tif.pages)
            if page >= pages:
                raise DataError(
                    f"{path} has {pages} page(s), but page {page + 1} was requested. "
                    "Check the marker or page option against the file."
                )
            tiff_page = tif.pages[page]
            array = tiff_page.asarray()
            axes = tiff_page.axes
    except DataError:
        raise
    except TIFF_ERRORS as error:
        raise DataError(_tiff_error_message(path, error)) from error
    # Planar TIFFs store samples first ("SYX"); the rest of the code expects "YXS".
    if array.ndim == 3 and axes.startswith("S"):
        array = np.moveaxis(array, 0, -1)
    return array


def _read_pillow(path: Path, kind: str) -> np.ndarray:
    try:
        with Image.open(path) as image:
            image.load()
            if kind == "mask" and image.mode == "P":
                # A palette mask stores its labels as palette indices; the colours are only for display.
                return np.asarray(image)
            if image.mode in ("RGBA", "LA", "PA", "P", "CMYK", "YCbCr"):
                image = image.convert("L" if image.mode == "LA" else "RGB")
            return np.asarray(image)
    except Image.DecompressionBombError as error:
        raise DataError(
            f"cannot decode {kind} {path}: {error} Cut it into smaller files, or save it as TIFF, "
            "which is read without this limit."
        ) from error
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        advice = "replace or remove it with its mask" if kind == "image" else "replace or remove it with its image"
        raise DataError(
            f"cannot decode {kind} {path}: {error}. The file is unreadable or truncated; {advice}."
        ) from error


def read_array(path: Path, page: int = 0, kind: str = "image") -> np.ndarray:
    """Decode one file without conversion; TIFF files return ``page`` (0-based).

    ``kind`` (``image`` or ``mask``) names the file in errors. Palette PNG masks
    return their palette indices, palette images their RGB colours.

    Raises:
        DataError: for a missing, unreadable or truncated file, a TIFF with
            fewer pages than ``page + 1``, or a ``page`` above 0 for a file that
            is not a TIFF.
    """
    if not path.is_file():
        raise DataError(f"{kind} file not found: {path}")
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff_page(path, page)
    if page != 0:
        raise DataError(
            f"page {page + 1} was requested from {path}, but only TIFF files have pages. "
            "Set the page option to 0, or store the images as multi-page TIFF files."
        )
    return _read_pillow(path, kind)


def to_image_array(array: np.ndarray, path: Path) -> np.ndarray:
    """Return ``array`` as ``(H, W, C)`` with 1 to 4 channels of ``uint8`` or ``uint16``."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or not 1 <= array.shape[2] <= 4:
        raise DataError(
            f"image {path} has shape {array.shape}; expected (H, W) or (H, W, C) with 1 to 4 "
            "channels. For a multi-page TIFF, select one page."
        )
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() <= 65535:
        return array.astype(np.uint16)
    if np.issubdtype(array.dtype, np.floating) and array.min() >= 0.0 and array.max() <= 1.0:
        return np.round(array * 65535).astype(np.uint16)
    raise DataError(
        f"image {path} has pixel type {array.dtype} with range [{array.min()}, {array.max()}]; "
        "supported are 8- and 16-bit integers and floats in [0, 1]. Convert the file."
    )


def read_image(path: Path, page: int = 0) -> np.ndarray:
    """Decode an image file into ``(H, W, C)`` ``uint8``/``uint16``.

    Alpha channels of PNG files are dropped; TIFF files keep all their samples.
    """
    return to_image_array(read_array(path, page), path)


def read_mask(path: Path) -> np.ndarray:
    """Decode a mask file into ``(H, W)`` ``uint8`` with 1 wherever a label is above 0.

    A mask stored with colour channels counts a pixel as foreground when any
    channel is above 0.
    """
    array = read_array(path, kind="mask")
    if array.ndim == 3:
        array = array.max(axis=2)
    if array.ndim != 2:
        raise DataError(f"mask {path} has shape {array.shape}; expected a 2-D label image.")
    return (array > 0).astype(np.uint8)
