"""``python -m sweep.fetch_weights --space NAME --cache-dir DIR``: download every encoder a space uses.

Run it on a machine with network, copy ``DIR`` to the air-gapped workers and
set ``SEGSWEEP_WEIGHTS_DIR=DIR`` (or pass ``--weights-dir DIR`` to
``sweep.run``); models are then built offline.
"""

from __future__ import annotations

import argparse
import logging
import sys

from segcore.models.weights import fetch_all
from sweep.dry_run import sample_trial_configs
from sweep.spaces import SearchSpace, SpaceContext, SpaceError, available_spaces, load_space


def pretrained_encoders(space: SearchSpace) -> list[str]:
    """Return the encoders whose trials ask for ImageNet weights, in first-use order."""
    encoders = [
        config.get("encoder", "resnet18")
        for config in sample_trial_configs(space)
        if config.get("encoder_weights", "imagenet") == "imagenet"
    ]
    return list(dict.fromkeys(encoders))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sweep.fetch_weights", description=__doc__.splitlines()[0])
    parser.add_argument("--space", required=True, help=f"space name ({', '.join(available_spaces())}) or .py file")
    parser.add_argument("--cache-dir", required=True, help="folder to download the weights into")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        encoders = pretrained_encoders(load_space(args.space, SpaceContext()))
    except SpaceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not encoders:
        print(f"space {args.space} uses no pretrained encoder weights")
        return 0
    status = fetch_all(encoders, args.cache_dir)
    if status:
        return status
    print(f"done; on the workers set SEGSWEEP_WEIGHTS_DIR={args.cache_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
