"""Cutting large slides into square tiles and stitching them back.

A slide of ``H x W`` is padded with zeros at the bottom and right to
``ceil(H / T) * T`` by ``ceil(W / T) * T`` and cut into tiles of ``T x T`` in
row-major order: a 1408 x 1876 slide gives 3 x 4 = 12 tiles of 480 x 480.
"""

from __future__ import annotations

import math

import numpy as np


def tile_grid(height: int, width: int, tile_size: int) -> tuple[int, int]:
    """Return the number of tile rows and columns for a slide."""
    if tile_size <= 0:
        raise ValueError(f"tile_size must be positive, got {tile_size}")
    return math.ceil(height / tile_size), math.ceil(width / tile_size)


def cut_tiles(array: np.ndarray, tile_size: int) -> np.ndarray:
    """Cut ``(H, W)`` or ``(H, W, C)`` into ``(N, T, T[, C])`` tiles, padding with zeros."""
    rows, cols = tile_grid(array.shape[0], array.shape[1], tile_size)
    padding = [(0, rows * tile_size - array.shape[0]), (0, cols * tile_size - array.shape[1])]
    padding += [(0, 0)] * (array.ndim - 2)
    padded = np.pad(array, padding)
    tiles = padded.reshape(rows, tile_size, cols, tile_size, *array.shape[2:])
    tiles = np.swapaxes(tiles, 1, 2)
    return tiles.reshape(rows * cols, tile_size, tile_size, *array.shape[2:])


def stitch_tiles(tiles: np.ndarray, height: int, width: int) -> np.ndarray:
    """Invert :func:`cut_tiles`: reassemble ``(N, T, T[, C])`` tiles into ``(H, W[, C])``."""
    tile_size = tiles.shape[1]
    rows, cols = tile_grid(height, width, tile_size)
    if tiles.shape[0] != rows * cols:
        raise ValueError(
            f"{tiles.shape[0]} tiles cannot cover {height} x {width} with {rows} x {cols} tiles of {tile_size}"
        )
    grid = tiles.reshape(rows, cols, tile_size, tile_size, *tiles.shape[3:])
    grid = np.swapaxes(grid, 1, 2)
    padded = grid.reshape(rows * tile_size, cols * tile_size, *tiles.shape[3:])
    return padded[:height, :width]
