"""Building segmentation networks by architecture and encoder name."""

from __future__ import annotations

import difflib
import inspect
import logging
from pathlib import Path

import segmentation_models_pytorch as smp
import timm
from torch import nn

from segcore.models.network import SegmentationNetwork
from segcore.models.weights import EncoderWeightsError, find_encoder_weights, load_state_dict_file

logger = logging.getLogger(__name__)

ARCHITECTURES = dict(smp.MODEL_ARCHITECTURES_MAPPING)


def architecture_class(name: str) -> type:
    """Return the smp model class of architecture ``name`` (case-insensitive).

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    try:
        return ARCHITECTURES[name.lower()]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; valid architectures: {', '.join(ARCHITECTURES)}") from None


def check_encoder(name: str) -> None:
    """Check that ``name`` is an smp encoder or ``tu-<timm model>``.

    Raises:
        ValueError: for an unknown name, listing the valid smp encoders.
    """
    if name in smp.encoders.encoders:
        return
    if name.startswith("tu-"):
        if timm.is_model(name[3:]):
            return
        raise ValueError(f"unknown timm encoder {name!r}: timm has no model {name[3:]!r}; see timm.list_models()")
    valid = smp.encoders.get_encoder_names()
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise ValueError(
        f"unknown encoder {name!r}; {hint}valid encoders are 'tu-<timm model>' and the segmentation-models-pytorch "
        f"encoders: {', '.join(valid)}"
    )


def build_model(
    arch: str = "unet",
    encoder: str = "resnet18",
    in_channels: int = 3,
    classes: int = 2,
    encoder_weights: str | None = None,
    encoder_depth: int = 3,
    decoder_channels: tuple[int, ...] = (256, 128, 64),
    decoder_attention: str | None = "scse",
    weights_cache: str | Path | None = None,
) -> SegmentationNetwork:
    """Return a segmentation network that maps ``(B, in_channels, H, W)`` to logits ``(B, classes, H, W)``.

    Args:
        arch: smp architecture name (``unet``, ``unetplusplus``, ``fpn``, ...).
        encoder: smp encoder name, or ``tu-<timm name>``.
        encoder_weights: ``"imagenet"`` (or another weights name smp lists for
            the encoder), ``None`` for random initialisation, or the path of a
            local ``.safetensors``/``.pth`` encoder state dict. ``tu-``
            encoders take only ``"imagenet"`` (timm's default pretrained
            weights) or ``None``.
        decoder_channels: One entry per encoder stage (``encoder_depth`` entries).
        decoder_attention: ``"scse"`` or ``None``; used by architectures whose
            decoder takes an attention type (U-Net, U-Net++).
        weights_cache: Folder holding downloaded ImageNet weights.

    Decoder settings that an architecture does not take are left out with a log
    message, so every smp architecture can be built by name.

    Raises:
        ValueError: for an unknown architecture or encoder, or decoder
            channels that do not match the depth.
        EncoderWeightsError: when the requested weights cannot be found.
    """
    model_class = architecture_class(arch)
    check_encoder(encoder)
    if len(decoder_channels) != encoder_depth:
        raise ValueError(
            f"decoder_channels {tuple(decoder_channels)} has {len(decoder_channels)} entries but encoder_depth is "
            f"{encoder_depth}; give one entry per encoder stage"
        )
    accepted = inspect.signature(model_class.__init__).parameters
    options = {"decoder_channels": tuple(decoder_channels), "decoder_attention_type": decoder_attention}
    skipped = [name for name in options if name not in accepted]
    if skipped:
        logger.info("architecture %s takes no %s; left out", arch, ", ".join(skipped))
    kwargs = {name: value for name, value in options.items() if name in accepted}

    local_weights = _resolve_weights(encoder, encoder_weights, weights_cache)
    timm_weights = encoder_weights is not None and encoder.startswith("tu-")
    try:
        model = model_class(
            encoder_name=encoder,
            encoder_depth=encoder_depth,
            encoder_weights=True if timm_weights else None,
            in_channels=3 if local_weights else in_channels,
            classes=classes,
            **kwargs,
        )
    except OSError as error:
        if not timm_weights:
            raise
        # NOTE: timm downloads into the Hugging Face cache itself, so weights_cache
        # and the fetch command do not cover tu- encoders.
        raise EncoderWeightsError(
            f"pretrained weights of timm encoder {encoder} are not in the Hugging Face cache (HF_HUB_CACHE) and could "
            f"not be downloaded: {error}. Build the model once on a machine with network and copy that cache, or "
            "use encoder_weights=None."
        ) from error
    if local_weights is not None:
        state = load_state_dict_file(local_weights)
        try:
            model.encoder.load_state_dict(state)
        except RuntimeError as error:
            raise EncoderWeightsError(f"weights in {local_weights} do not fit encoder {encoder}: {error}") from error
        # Adapts the first convolution to in_channels, reusing the pretrained filters.
        model.encoder.set_in_channels(in_channels, pretrained=True)
    _drop_unused_stages(model.encoder, encoder_depth)
    return SegmentationNetwork(model, divisor=model.encoder.output_stride)


def _drop_unused_stages(encoder, depth: int) -> None:
    """Replace encoder stages deeper than ``depth`` with identities.

    smp keeps every stage of a ResNet even at depth 3, where only the stem,
    layer1 and layer2 run. The unused stages hold most of the parameters of
    ResNet-50/101 (and their optimiser state and checkpoint bytes) without
    changing the output.
    """
    if not hasattr(encoder, "get_stages"):
        return
    unused = [module for stride, modules in encoder.get_stages().items() if stride > 2**depth for module in modules]
    for name, child in list(encoder.named_children()):
        if any(child is module for module in unused):
            setattr(encoder, name, nn.Identity())


def _resolve_weights(encoder: str, encoder_weights: str | None, weights_cache: str | Path | None) -> Path | None:
    """Return the local file to load into the encoder, or ``None`` when smp or timm initialise it."""
    if encoder_weights is None:
        return None
    if encoder.startswith("tu-"):
        if encoder_weights != "imagenet":
            raise EncoderWeightsError(
                f"encoder_weights {encoder_weights!r} is not supported for timm encoder {encoder}; use 'imagenet' "
                "(timm's default pretrained weights) or None"
            )
        return None
    if encoder_weights in smp.encoders.encoders.get(encoder, {}).get("pretrained_settings", {}):
        return find_encoder_weights(encoder, weights_cache, encoder_weights)
    path = Path(encoder_weights).expanduser()
    if path.suffix in (".safetensors", ".pth", ".pt", ".bin") or path.exists():
        return path
    raise EncoderWeightsError(
        f"encoder_weights {encoder_weights!r} is neither a weights name of {encoder} nor an existing file; "
        "use 'imagenet', None, or the path of a .safetensors/.pth file"
    )


def check_encoder_weights(encoder: str, encoder_weights: str | None, weights_cache: str | Path | None = None) -> None:
    """Raise ``EncoderWeightsError`` now if building this encoder would fail to find its weights.

    ImageNet weights are looked up in the cache (and downloaded when the Hub is
    reachable); a local file must exist. Used before a sweep starts, so that no
    trial fails on it later.
    """
    path = _resolve_weights(encoder, encoder_weights, weights_cache)
    if path is not None and not path.is_file():
        raise EncoderWeightsError(f"encoder weights file {path} not found; give an existing .safetensors/.pth file")
