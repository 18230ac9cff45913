"""``python -m segcore.data inspect ROOT``: what a dataset looks like after splitting and preprocessing."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from typing import Any

from segcore.cli_options import add_data_options, data_settings
from segcore.data.class_weights import PixelStats, all_scheme_weights
from segcore.data.config import DataConfig
from segcore.data.errors import DataError
from segcore.data.prepare import prepare_dataset, source_statistics
from segcore.data.records import SPLITS


def _size_text(shapes: list[list[int]]) -> str:
    sizes = Counter(f"{h}x{w}" for h, w in shapes)
    text = ", ".join(f"{size}: {count}" for size, count in sizes.most_common(4))
    return text + (f", ... ({len(sizes)} sizes)" if len(sizes) > 4 else "")


def _weights_lines(stats: PixelStats, where: str) -> list[str]:
    lines = [
        f"class weights from the training split {where} (f = {stats.foreground_fraction:.4f}), as (background, foreground):"
    ]
    for scheme, weights in all_scheme_weights(stats).items():
        text = f"({weights[0]:.4f}, {weights[1]:.4f})" if isinstance(weights, tuple) else f"unavailable: {weights}"
        lines.append(f"  {scheme:<17} {text}")
    return lines


def format_report(
    config: DataConfig, sources: dict[str, dict[str, Any]], prepared=None, problem: str | None = None
) -> str:
    """Return the inspection table: source images per split, and the prepared samples when there are any."""
    channels = Counter()
    for split in SPLITS:
        channels.update(sources[split]["channels"])
    lines = [
        f"dataset {config.dataset} (layout {config.layout}, root {config.root or 'none, generated into the cache'})",
        f"channels: {', '.join(f'{c} ({n} images)' for c, n in sorted(channels.items()))}",
        "",
        f"{'split':<6} {'images':>7} {'samples':>8} {'fg native':>10} {'fg prepared':>12}  source sizes (H x W: count)",
    ]
    for split in SPLITS:
        source = sources[split]
        samples = len(prepared.splits[split]) if prepared else "-"
        fg_prepared = f"{prepared.pixel_stats(split).foreground_fraction:.4f}" if prepared else "-"
        lines.append(
            f"{split:<6} {len(source['source_shapes']):>7} {samples:>8} {source['stats'].foreground_fraction:>10.4f} {fg_prepared:>12}  {_size_text(source['source_shapes'])}"
        )
    lines.append(
        "fg native: foreground pixels over all pixels of the source images. fg prepared: the same after resizing "
        "or tiling, where every resized image has the same weight and tile padding counts as background."
    )
    lines.append("")
    if prepared is not None:
        meta = prepared.meta
        lines.append(
            f"prepared: {prepared.image_shape[0]} x {prepared.image_shape[1]} px, {meta['dtype']}, cache {prepared.folder}"
        )
        strata = {split: meta["splits"][split]["strata"] for split in SPLITS}
        if any(set(counts) != {"None"} for counts in strata.values()):
            lines.append(
                "classes per split: " + "; ".join(f"{split} {dict(sorted(c.items()))}" for split, c in strata.items())
            )
        lines += ["", *_weights_lines(prepared.pixel_stats("train"), "as prepared")]
    else:
        lines.append(f"not prepared for training: {problem}")
        lines += ["", *_weights_lines(sources["train"]["stats"], "at native size")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segcore.data", description="Inspect a dataset as segsweep prepares it."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect", help="counts per split, image sizes, channels, foreground fraction and class weights"
    )
    inspect.add_argument("root", nargs="?", help="dataset folder (omit for --layout synthetic)")
    add_data_options(inspect)
    inspect.add_argument("-v", "--verbose", action="store_true", help="show progress while decoding")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        config = DataConfig.from_dict(data_settings(args, args.root))
        sources = source_statistics(config)
        try:
            prepared, problem = prepare_dataset(config), None
        except DataError as error:
            prepared, problem = None, str(error)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(config, sources, prepared, problem))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
