"""Encoder weights: ImageNet from a local cache or the Hugging Face Hub, or a local file.

segmentation-models-pytorch 0.6 fetches ImageNet weights of its own encoders
from the Hugging Face Hub (repositories ``smp-hub/<encoder>.imagenet``) when a
model is built. Here the download is a separate step, so that a machine
without network can build models from a filled cache, and a missing file is
reported before training starts, with the command that fills the cache.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import segmentation_models_pytorch as smp
import torch
from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from safetensors.torch import load_file

logger = logging.getLogger(__name__)

WEIGHTS_CACHE_VARIABLE = "SEGSWEEP_WEIGHTS_DIR"
WEIGHT_FILE = "model.safetensors"
FETCH_COMMAND = "python -m segcore.models.weights fetch"


class EncoderWeightsError(RuntimeError):
    """Raised when encoder weights cannot be found or loaded."""


def weights_cache_dir(cache_dir: str | Path | None = None) -> Path | None:
    """Return the weights cache: ``cache_dir``, else ``$SEGSWEEP_WEIGHTS_DIR``, else ``None`` (the Hub default)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    if os.environ.get(WEIGHTS_CACHE_VARIABLE):
        return Path(os.environ[WEIGHTS_CACHE_VARIABLE]).expanduser()
    return None


def hub_location(encoder: str, weights: str = "imagenet") -> tuple[str, str | None]:
    """Return the Hub repository and revision holding ``weights`` for ``encoder``."""
    if encoder not in smp.encoders.encoders:
        raise EncoderWeightsError(
            f"encoder {encoder!r} has no weights listed by segmentation-models-pytorch; "
            f"known encoders include {', '.join(list(smp.encoders.encoders)[:8])}, ..."
        )
    settings = smp.encoders.encoders[encoder]["pretrained_settings"]
    if weights not in settings:
        raise EncoderWeightsError(f"encoder {encoder!r} has no {weights!r} weights; available: {', '.join(settings)}")
    return settings[weights]["repo_id"], settings[weights].get("revision")


def hub_reachable(timeout_s: float = 5.0) -> bool:
    """Return whether the Hugging Face Hub accepts a TCP connection; ``False`` when ``HF_HUB_OFFLINE`` is set.

    Without this check an offline machine waits through the Hub client's
    retries (about 25 s per file) before failing.
    """
    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def fetch_encoder_weights(encoder: str, cache_dir: str | Path | None = None, weights: str = "imagenet") -> Path:
    """Return the cached ``weights`` file of ``encoder``, downloading it into the cache first if needed."""
    repo_id, revision = hub_location(encoder, weights)
    cache = weights_cache_dir(cache_dir)
    cached = try_to_load_from_cache(repo_id, WEIGHT_FILE, cache_dir=cache, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    if not hub_reachable():
        raise EncoderWeightsError(
            f"failed to download {weights} weights of {encoder} from {repo_id}: the Hugging Face Hub "
            f"({constants.ENDPOINT}) is unreachable or HF_HUB_OFFLINE is set"
        )
    try:
        hf_hub_download(repo_id, "config.json", revision=revision, cache_dir=cache)
        path = hf_hub_download(repo_id, WEIGHT_FILE, revision=revision, cache_dir=cache)
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        raise EncoderWeightsError(
            f"failed to download {weights} weights of {encoder} from {repo_id}: {error}"
        ) from error
    return Path(path)


def find_encoder_weights(encoder: str, cache_dir: str | Path | None = None, weights: str = "imagenet") -> Path:
    """Return the cached ``weights`` file of ``encoder``, downloading it if the Hub is reachable.

    Raises:
        EncoderWeightsError: when the file is neither cached nor downloadable,
            saying where to put it and which command fills the cache.
    """
    repo_id, revision = hub_location(encoder, weights)
    cache = weights_cache_dir(cache_dir)
    cached = try_to_load_from_cache(repo_id, WEIGHT_FILE, cache_dir=cache, revision=revision)
    if isinstance(cached, str):
        return Path(cached)
    try:
        return fetch_encoder_weights(encoder, cache, weights)
    except EncoderWeightsError as error:
        where = cache or "the Hugging Face cache (HF_HUB_CACHE, default ~/.cache/huggingface/hub)"
        raise EncoderWeightsError(
            f"{weights} weights for encoder {encoder} are not in {where} and could not be downloaded ({error.__cause__ or error}). "
            f"On a machine with network run '{FETCH_COMMAND} {encoder} --cache-dir DIR' (for a sweep: "
            "'python -m sweep.fetch_weights --space NAME --cache-dir DIR'), copy DIR here and set "
            f"{WEIGHTS_CACHE_VARIABLE}=DIR. Or give a local .safetensors/.pth file as the encoder weights, or train "
            "without pretrained weights (--encoder-weights none; in a sweep --set encoder_weights=null)."
        ) from error


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` or PyTorch (``.pth``/``.pt``) state dict."""
    if not path.is_file():
        raise EncoderWeightsError(f"encoder weights file {path} not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path), device="cpu")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any decoding failure means the same thing here.
        raise EncoderWeightsError(f"failed to read encoder weights file {path}: {error}") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"encoder weights file {path} contains a {type(state).__name__}, not a state dict")
    return state


def main(argv: list[str] | None = None) -> int:
    """Command line: download encoder weights into a cache folder."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=FETCH_COMMAND.rsplit(" ", 1)[0], description="Pre-fetch ImageNet encoder weights."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download the ImageNet weights of the named encoders")
    fetch.add_argument("encoders", nargs="+", help="encoder names, e.g. resnet18 resnet34")
    fetch.add_argument(
        "--cache-dir", help=f"cache folder (default: ${WEIGHTS_CACHE_VARIABLE} or the Hugging Face cache)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return fetch_all(args.encoders, args.cache_dir)


def fetch_all(encoders: list[str], cache_dir: str | Path | None) -> int:
    """Download the ImageNet weights of ``encoders``, printing each file; return a command exit status."""
    for encoder in encoders:
        try:
            path = fetch_encoder_weights(encoder, cache_dir)
        except EncoderWeightsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"{encoder}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
