"""Tests for train.models: every registered model's shape contract, gradients, size refusal, residual start."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be downloaded at run time

import pytest
import torch

from train.models import MODELS, N2NUNet, ResidualWrapper, count_parameters, create_model

torch.set_num_threads(1)  # 2 shared cores: a second thread mostly spins under load

# Small variants so the whole registry runs on 2 CPU cores in seconds.
TINY = {
    "n2n_unet": {"width": 8},
    "multiresunet": {"width": 8},
    "unet": {"encoder": "resnet18", "width": 4},
    "unetplusplus": {"encoder": "resnet18", "width": 4},
    "linknet": {"encoder": "resnet18"},
    "manet": {"encoder": "resnet18", "width": 4},
    "deeplabv3": {"encoder": "resnet18", "width": 4},
    "fcn": {"backbone": "resnet50"},
}
NAMES = sorted(MODELS)
SIZE_PX = 64


def _input(channels: int = 3, seed: int = 0, size_px: int = SIZE_PX) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # batch 2: deeplabv3's ASPP image pooling BatchNorms one value per channel and sample
    return torch.rand(2, channels, size_px, size_px, generator=g)


@pytest.fixture(scope="module")
def built():
    """One tiny model per name, built lazily and shared by the tests that do not train it."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name, **TINY[name])
        return cache[name]

    return get


def test_tiny_configs_cover_the_registry():
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("name", NAMES)
def test_forward_keeps_shape(built, name):
    model = built(name)
    y = model(_input())
    assert y.shape == (2, 3, SIZE_PX, SIZE_PX)
    assert y.dtype == torch.float32 and torch.isfinite(y).all()
    assert SIZE_PX % model.size_multiple == 0


@pytest.mark.parametrize("name", NAMES)
def test_other_channel_counts(name):
    torch.manual_seed(0)
    model = create_model(name, in_channels=1, out_channels=2, **TINY[name])
    assert model(_input(channels=1, size_px=32)).shape == (2, 2, 32, 32)
    with pytest.raises(ValueError, match=r"needs a \(B, 1, H, W\) tensor"):
        model(_input(channels=3))


@pytest.mark.parametrize("name", NAMES)
def test_one_step_changes_parameters(name):
    torch.manual_seed(0)
    model = create_model(name, **TINY[name]).train()
    before = {k: p.detach().clone() for k, p in model.named_parameters()}
    x, target = _input(seed=1, size_px=32), _input(seed=2, size_px=32)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    loss = (model(x) - target).abs().mean()
    loss.backward()
    # Every parameter takes part in the graph (DDP without find_unused_parameters needs that).
    missing = [k for k, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    opt.step()
    changed = [k for k, p in model.named_parameters() if not torch.equal(p.detach(), before[k])]
    assert len(changed) >= 0.9 * len(before)
    head = next(k for k, p in model.named_parameters() if p is model.output_conv.weight)
    assert head in changed


@pytest.mark.parametrize("name", NAMES)
def test_size_not_multiple_is_refused(built, name):
    model = built(name)
    m = model.size_multiple
    h, w = 2 * m + m // 2, 2 * m
    msg = f"{name} needs H and W divisible by {m}; got {h}x{w}: pad or resize to {3 * m}x{2 * m}"
    with pytest.raises(ValueError) as err:
        model(torch.zeros(2, 3, h, w))
    assert str(err.value) == msg


def test_size_message_example():
    model = create_model("n2n_unet", width=4)
    with pytest.raises(ValueError) as err:
        model.check_input_size(100, 120)
    assert str(err.value) == "n2n_unet needs H and W divisible by 32; got 100x120: pad or resize to 128x128"
    model.check_input_size(128, 96)  # accepted


@pytest.mark.parametrize("name", NAMES)
def test_residual_wrapper_starts_as_identity(name):
    torch.manual_seed(0)
    model = create_model(name, residual=True, **TINY[name])
    assert isinstance(model, ResidualWrapper) and model.name == name
    x = _input(size_px=32)
    assert torch.equal(model(x), x)
    # ... and leaves the identity after one step.
    opt = torch.optim.SGD(model.parameters(), lr=1e-1)
    (model(x) - _input(seed=3, size_px=32)).abs().mean().backward()
    opt.step()
    assert not torch.equal(model(x), x)


@pytest.mark.parametrize("name", NAMES)
def test_channels_last_gives_same_output(built, name):
    model = built(name).eval()
    x = _input(size_px=32)
    with torch.inference_mode():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        out = model_cl(x.contiguous(memory_format=torch.channels_last))
        model.to(memory_format=torch.contiguous_format)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'resnet'; valid names: deeplabv3, fcn, linknet"):
        create_model("resnet")


@pytest.mark.parametrize("name", ["n2n_unet", "unet"])
def test_gated_output_blends_image_and_input_by_the_gate(name):
    torch.manual_seed(0)
    model = create_model(name, gated=True, **TINY[name]).eval()
    assert model.net.out_channels == 4 and model.out_channels == 3
    assert create_model(**model.model_config).net.out_channels == 4, "rebuilt from its config"
    x = _input(size_px=32)
    with torch.no_grad():
        raw = model.net(x)
        gate = torch.sigmoid(raw[:, 3:])
        torch.testing.assert_close(model(x), x + gate * (raw[:, :3] - x))
        model.net.output_conv.bias[-1] = -30.0  # gate shut: the output is the input
        torch.testing.assert_close(model(x), x, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="not both"):
        create_model(name, gated=True, residual=True, **TINY[name])


def test_residual_needs_equal_channels():
    with pytest.raises(ValueError, match="in_channels == out_channels"):
        create_model("n2n_unet", out_channels=1, width=4, residual=True)


@pytest.mark.parametrize("name", ["linknet", "fcn"])
def test_width_refused_where_meaningless(name):
    with pytest.raises(ValueError, match="no width option"):
        create_model(name, width=8)


def test_pretrained_weights_cannot_be_requested():
    with pytest.raises(ValueError, match="encoder_weights"):
        create_model("unet", encoder="resnet18", encoder_weights="imagenet")


def test_deeplabv3_batch_of_one_in_training_is_explained(built):
    model = built("deeplabv3").train()
    with pytest.raises(ValueError, match="batch of at least 2"):
        model(torch.zeros(1, 3, SIZE_PX, SIZE_PX))


def test_model_config_rebuilds_the_same_architecture():
    model = create_model("multiresunet", width=4, alpha=1.5, residual=True)
    again = create_model(**model.model_config)
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k: v.shape for k, v in again.state_dict().items()
    }
    again.load_state_dict(model.state_dict())


def test_n2n_unet_matches_lehtinen_table_2():
    def conv(cin, cout):
        return 9 * cin * cout + cout

    n, m = 3, 3
    expected = (
        conv(n, 48)
        + 6 * conv(48, 48)  # enc_conv0..6
        + 2 * conv(96, 96)  # dec_conv5a/b (concat 48 + 48)
        + 3 * (conv(144, 96) + conv(96, 96))  # dec_conv4..2 a/b (concat 96 + 48)
        + conv(96 + n, 64)
        + conv(64, 32)
        + conv(32, m)  # dec_conv1a/b/c
    )
    model = create_model("n2n_unet")
    assert isinstance(model, N2NUNet)
    assert count_parameters(model) == expected == 991_203


def test_n2n_unet_full_skip_feeds_first_encoder_features_to_the_last_stage():
    """full_skip adds exactly `width` input channels to dec_conv1a (the first encoder stage's features), keeps the
    output shape, rebuilds from model_config, and without it the model is the paper's."""
    plain, skip = create_model("n2n_unet", 3, 1, width=8), create_model("n2n_unet", 3, 1, width=8, full_skip=True)
    assert skip.dec_conv1a.in_channels == plain.dec_conv1a.in_channels + 8
    assert count_parameters(skip) - count_parameters(plain) == 9 * 8 * plain.dec_conv1a.out_channels
    x = torch.rand(2, 3, 64, 64)
    assert skip(x).shape == plain(x).shape == (2, 1, 64, 64)
    again = create_model(**skip.model_config)
    again.load_state_dict(skip.state_dict())
    assert torch.equal(again(x), skip(x))
    # the extra channels carry full-resolution detail: a one-pixel change reaches the output pixel itself
    # through enc_conv1 -> dec_conv1a, a path the paper's model lacks (it only has the raw input there)
    with torch.no_grad():
        skip.dec_conv1a.weight[:, :16 + 3].zero_()  # drop the upsampled decoder (2 * width) and the input channels
        y = x.clone()
        y[:, :, 32, 32] += 1.0
        assert (skip(y) - skip(x)).abs()[:, :, 32, 32].max() > 0
