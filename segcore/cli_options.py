"""Command-line options shared by ``segcore.train`` and ``segcore.data``: dataset and preprocessing."""

from __future__ import annotations

import argparse
import json
from typing import Any


def parse_key_value(text: str) -> tuple[str, Any]:
    """Parse ``KEY=VALUE``, reading the value as JSON when it parses."""
    key, separator, raw = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """Add the dataset and preprocessing flags; unset flags keep the layout's study defaults."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--layout", help="dataset layout: folder, isic2017, dermofit, dermatomyositis, synthetic (default: detected)"
    )
    group.add_argument(
        "--option",
        action="append",
        default=[],
        type=parse_key_value,
        metavar="KEY=VALUE",
        help="layout option, e.g. marker=CD4 or kind=lesion (repeatable)",
    )
    group.add_argument(
        "--dataset-name", dest="dataset", help="name shown in logs and tables (default: the folder name)"
    )
    group.add_argument("--split-seed", type=int, help="seed of the 70/10/20 split (default: 0)")
    group.add_argument(
        "--image-size",
        type=int,
        help="resize every image to this square side in pixels (default: the layout's, native for folder)",
    )
    group.add_argument(
        "--resize-steps",
        type=int,
        nargs="*",
        help="intermediate square sides before --image-size (the study uses 480 for RGB lesions)",
    )
    group.add_argument(
        "--tile-size", type=int, help="cut images into square tiles of this side in pixels (dermatomyositis: 480)"
    )
    group.add_argument("--max-images", type=int, help="use a fixed subset of this many source images")
    group.add_argument(
        "--rnorm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply Rnorm to RGB images (default: on for isic2017 and dermofit)",
    )
    group.add_argument("--cache-dir", help="decoded-sample cache (default: $SEGSWEEP_CACHE_DIR or ~/.cache/segsweep)")


def data_settings(args: argparse.Namespace, root: str | None) -> dict[str, Any]:
    """Return the data settings the user gave on the command line, with the layout detected if not given."""
    from pathlib import Path

    from segcore.data.layouts.detect import detect_layout

    settings: dict[str, Any] = {}
    layout, options = args.layout, {}
    if layout is None:
        layout, options = detect_layout(Path(root)) if root else ("synthetic", {})
    settings["layout"] = layout
    settings["root"] = str(Path(root).expanduser().resolve()) if root else None
    settings["layout_options"] = {**options, **dict(args.option)}
    for name in (
        "dataset",
        "split_seed",
        "image_size",
        "resize_steps",
        "tile_size",
        "max_images",
        "rnorm",
        "cache_dir",
    ):
        value = getattr(args, name)
        if value is not None:
            settings[name] = value
    if settings.get("image_size") is not None and "resize_steps" not in settings and layout in ("isic2017", "dermofit"):
        # A new final size for a study layout keeps the study's 480 step only when it is larger.
        settings["resize_steps"] = [step for step in (480,) if step > settings["image_size"]]
    return settings
