"""Segmentation models: a factory over segmentation-models-pytorch.

Named presets cover the book's needs: DeepLabV3+ with ResNet-50/101 for the paper recipes and a
small U-Net for the embedded 64x64 scenes. ``encoder_weights`` defaults to None (random
initialisation); ``"imagenet"`` is the user's option where the weights can be downloaded.
Drop-path (stochastic depth, for Dual Teacher's student) needs a timm encoder (``tu-...``).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn

from ..checks import ConfigError, choose

PRESETS: dict[str, dict[str, Any]] = {
    # the embedded data: U-Net on a 4-stage timm ResNet-18 (about 3.6M parameters)
    "unet-r18": dict(arch="unet", encoder="tu-resnet18", encoder_depth=4,
                     decoder_channels=(128, 64, 32, 16)),
    # small U-Nets for the CPU-sized full profile (the calibration in chapter 6 compares them):
    # a 4-stage timm ResNet-10-T (about 1.6M parameters) and a 4-stage MobileNetV3-Small at
    # width 0.5 (about 0.37M), both with a narrow decoder
    "unet-r10t": dict(arch="unet", encoder="tu-resnet10t", encoder_depth=4,
                      decoder_channels=(64, 32, 16, 8)),
    "unet-mnv3s": dict(arch="unet", encoder="tu-mobilenetv3_small_050", encoder_depth=4,
                       decoder_channels=(64, 32, 16, 8)),
    # the paper recipes (CPS, AdvSemiSeg, Dual Teacher's CNN setting)
    "deeplabv3plus-r50": dict(arch="deeplabv3plus", encoder="tu-resnet50"),
    "deeplabv3plus-r101": dict(arch="deeplabv3plus", encoder="tu-resnet101"),
}


class WeightsUnavailableError(ConfigError):
    """Pretrained encoder weights could not be fetched (no network) and none were given."""


def _hub_cache() -> str:
    import os
    return os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")


def _hub_resolves() -> bool:
    """Whether the Hugging Face hub's host (``HF_ENDPOINT``) has an address here, or a proxy
    is set (which resolves it instead). Without either (no network) every download attempt only
    waits through the hub's retries, about a minute."""
    import socket
    from urllib.parse import urlsplit
    from urllib.request import getproxies

    from huggingface_hub import constants
    proxies = getproxies()
    if proxies.get("https") or proxies.get("all"):
        return True
    try:
        socket.getaddrinfo(urlsplit(constants.ENDPOINT).hostname, 443)
    except (OSError, UnicodeError):
        return False
    return True


@contextmanager
def _cache_only(on: bool):
    """The hub in offline mode (its cache only) while ``on``."""
    if not on:
        yield
        return
    from huggingface_hub import constants
    was = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = was


def create_segmentation_model(name: str, num_classes: int, in_channels: int = 3,
                              encoder_weights: str | None = None, drop_path: float = 0.0,
                              weights_path: str | None = None, **overrides: Any) -> nn.Module:
    """Build a preset (``unet-r18``, ``unet-r10t``, ``deeplabv3plus-r101``, ...); any keyword
    of ``segmentation_models_pytorch.create_model`` may override the preset's values.

    ``encoder_weights`` (``"imagenet"``: the timm encoder's default pretrained weights) are
    fetched by timm from the Hugging Face hub into its cache; ``weights_path`` loads them from a
    file placed by hand instead (timm's weights for that encoder, ``.safetensors`` or ``.bin``
    or ``.pth``). Where the hub's host does not resolve (no network), the weights come from the
    hub's cache alone, at once; without them, one line says which file was needed, where timm
    looked and how to place it."""
    import segmentation_models_pytorch as smp

    spec = dict(PRESETS[choose("segmentation model", name, PRESETS)], **overrides)
    arch, encoder = spec.pop("arch"), spec.pop("encoder")
    if drop_path > 0:
        if not encoder.startswith("tu-"):
            raise ConfigError(f"drop-path needs a timm encoder (tu-...), got {encoder!r}")
        spec["drop_path_rate"] = drop_path
    weights = encoder_weights
    if weights_path is not None or encoder_weights is not None:
        if not encoder.startswith("tu-"):
            raise ConfigError(f"pretrained weights are supported for timm encoders (tu-...), "
                              f"got {encoder!r}")
        weights = True  # timm's default pretrained tag of the encoder
    if weights_path is not None:
        from pathlib import Path
        if not Path(weights_path).is_file():
            raise ConfigError(f"weights file {weights_path} does not exist")
        spec["pretrained_cfg_overlay"] = dict(file=str(weights_path))
    offline = weights is True and weights_path is None and not _hub_resolves()
    try:
        with _cache_only(offline):
            return smp.create_model(arch, encoder_name=encoder, encoder_weights=weights,
                                    in_channels=in_channels, classes=num_classes, **spec)
    except KeyError as e:  # smp lists the valid names in its message
        raise ConfigError(str(e).strip("'\"")[:300]) from None
    except Exception as e:
        if weights_path is not None:  # torch's advice (weights_only=False) would run its code
            first = (str(e).strip().splitlines() or [""])[0]
            first = "" if "weights_only" in str(e) else f": {first[:120]}"
            raise ConfigError(f"{weights_path}: cannot load it as the {encoder} encoder's "
                              f"weights ({type(e).__name__}{first}); pass timm's weights file "
                              f"of that encoder (model.safetensors or pytorch_model.bin)") from None
        if weights is None or not isinstance(e, (OSError, RuntimeError, ValueError)):
            raise
        import timm
        cfg = timm.models.get_pretrained_cfg(encoder[3:])
        hub_id = getattr(cfg, "hf_hub_id", None) or encoder[3:]
        raise WeightsUnavailableError(
            f"pretrained weights ({encoder_weights}) of the {encoder} encoder could not be "
            f"fetched ({'no network: the hub has no address here' if offline else type(e).__name__}"
            f"): timm needs {hub_id} (model.safetensors) and looked "
            f"in the Hugging Face cache {_hub_cache()}; on a machine with a network, download "
            f"that file and pass it with --weights PATH, or copy the hub cache here") from None


class Normalize(nn.Module):
    """Standardise [0, 1] images per channel inside the model, so that augmentations (and
    readers) work on plain colours."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def normalized_segmentation_model(name: str, num_classes: int, mean, std, **kw) -> nn.Module:
    """A preset behind a :class:`Normalize` layer: it takes images in [0, 1]."""
    return nn.Sequential(Normalize(mean, std),
                         create_segmentation_model(name, num_classes, len(mean), **kw))


class DualBranch(nn.Module):
    """One encoder, two decoders with their heads (the strong-weak dual-branch network):
    ``forward`` gives the strong branch's logits, the one evaluated; :meth:`both` gives the
    strong and the weak branch's logits of one pass through the shared encoder. Built from two
    presets of one architecture: the second one's decoder and head become the weak branch."""

    def __init__(self, strong: nn.Sequential, weak: nn.Sequential):
        super().__init__()
        self.normalize, net = strong[0], strong[1]
        self.encoder, self.decoder, self.head = net.encoder, net.decoder, net.segmentation_head
        self.weak_decoder, self.weak_head = weak[1].decoder, weak[1].segmentation_head

    def both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(self.normalize(x))
        return (self.head(self.decoder(features)),
                self.weak_head(self.weak_decoder(features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(self.normalize(x))))
