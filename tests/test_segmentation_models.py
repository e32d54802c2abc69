import socket

import pytest
import torch
import torch.nn as nn

from semibook.config import ConfigError
from semibook.models import FCDiscriminator, create_segmentation_model


def test_discriminator_is_five_strided_convs_and_returns_a_full_size_map():
    d = FCDiscriminator(11)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256, 512, 1]
    assert all(c.kernel_size == (4, 4) and c.stride == (2, 2) for c in convs)
    out = d(torch.softmax(torch.randn(2, 11, 64, 48), 1))
    assert out.shape == (2, 1, 64, 48)


def test_small_model_segments_at_full_resolution_with_random_weights():
    m = create_segmentation_model("unet-r18", 11)
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 11, 64, 64)
    assert 3e6 < sum(p.numel() for p in m.parameters()) < 4.5e6


def test_drop_path_only_when_asked():
    count = lambda m: sum(type(x).__name__ == "DropPath" for x in m.modules())
    assert count(create_segmentation_model("unet-r18", 11, drop_path=0.1)) > 0
    assert count(create_segmentation_model("unet-r18", 11)) == 0
    with pytest.raises(ConfigError, match="timm encoder"):
        create_segmentation_model("unet-r18", 11, drop_path=0.1, encoder="resnet18")


def test_unknown_names_list_the_choices():
    with pytest.raises(ConfigError, match="unet-r18"):
        create_segmentation_model("segformer-b9", 11)
    with pytest.raises(ConfigError, match="resnet18"):
        create_segmentation_model("unet-r18", 11, encoder="resnet1800")


def test_pretrained_weights_out_of_reach_are_one_clear_error(tmp_path, monkeypatch):
    from semibook.models.segmentation import WeightsUnavailableError
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a machine without a network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # the hub reads both when it is first imported: an earlier test may have imported it (it
    # then tried the network until its timeouts, 40 s here)
    import huggingface_hub.constants as hub
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    with pytest.raises(WeightsUnavailableError) as e:
        create_segmentation_model("unet-r10t", 11, encoder_weights="imagenet")
    msg = str(e.value)
    assert "timm/resnet10t.c3_in1k" in msg and str(tmp_path / "hf" / "hub") in msg
    assert "--weights PATH" in msg and "\n" not in msg


def _no_address(*args, **kwargs):
    raise socket.gaierror(-2, "Name or service not known")


def test_without_a_network_the_hub_cache_alone_is_read_at_once(tmp_path, monkeypatch):
    """No address for the hub's host: no download attempt (each would wait through the hub's
    retries, about a minute), the weights of a hub cache copied here are loaded, and without
    them one line says so, naming the cause."""
    import time

    import huggingface_hub.constants as hub
    import timm
    from safetensors.torch import save_file

    from semibook.models.segmentation import WeightsUnavailableError
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(socket, "getaddrinfo", _no_address)
    for var in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    t = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="no network: the hub has no address"):
        create_segmentation_model("unet-r10t", 11, encoder_weights="imagenet")
    assert time.perf_counter() - t < 20 and hub.HF_HUB_OFFLINE is False  # restored
    # a copy of the hub cache holding timm's file for the encoder: it is what gets loaded
    source = timm.create_model("resnet10t", pretrained=False)
    torch.nn.init.constant_(source.conv1[0].weight, 0.25)
    repo = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in source.state_dict().items()},
              str(repo / "snapshots" / commit / "model.safetensors"))
    m = create_segmentation_model("unet-r10t", 11, encoder_weights="imagenet")
    conv = next(v for k, v in m.encoder.named_parameters() if k.endswith("conv1.0.weight"))
    assert torch.all(conv == 0.25)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")  # the proxy resolves it
    from semibook.models.segmentation import _hub_resolves
    assert _hub_resolves()


def test_a_weights_file_placed_by_hand_is_loaded(tmp_path):
    import timm
    source = timm.create_model("resnet10t", pretrained=False)
    torch.nn.init.constant_(source.conv1[0].weight, 0.125)  # recognisable values
    path = tmp_path / "resnet10t.pth"
    torch.save(source.state_dict(), path)
    m = create_segmentation_model("unet-r10t", 11, weights_path=str(path))
    enc = dict(m.encoder.named_parameters())
    conv = next(v for k, v in enc.items() if k.endswith("conv1.0.weight"))
    assert torch.all(conv == 0.125)
    fresh = create_segmentation_model("unet-r10t", 11)
    conv2 = next(v for k, v in fresh.encoder.named_parameters() if k.endswith("conv1.0.weight"))
    assert not torch.all(conv2 == 0.125)
    with pytest.raises(ConfigError, match="does not exist"):
        create_segmentation_model("unet-r10t", 11, weights_path=str(tmp_path / "missing.pth"))
