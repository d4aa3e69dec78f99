"""Model registry: image-to-image networks for restoration (n2n, n2c) and detection (seg) behind `create_model`."""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MODELS",
    "FCNModel",
    "Model",
    "MultiResUNet",
    "N2NUNet",
    "ResidualWrapper",
    "SmpModel",
    "count_parameters",
    "create_model",
]


class Model(nn.Module, abc.ABC):
    """Base of every registered model: states the tensor contract and refuses inputs it cannot take.

    Contract: `forward(x)` maps a float tensor (B, in_channels, H, W) to (B, out_channels, H, W) of the
    same H and W; H and W must be positive multiples of `size_multiple`. Outputs are linear (no
    activation): restoration outputs live in the input's normalisation, seg outputs are logits.
    """

    name: str = "model"
    size_multiple: int = 1

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        if in_channels < 1 or out_channels < 1:
            raise ValueError(
                f"{self.name} needs in_channels and out_channels >= 1; got {in_channels}, {out_channels}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels

    def check_input_size(self, h: int, w: int) -> None:
        """Raise ValueError unless an H x W input is a positive multiple of `size_multiple` on both sides."""
        m = self.size_multiple
        if h % m or w % m or h < m or w < m:
            good_h = max(1, math.ceil(h / m)) * m
            good_w = max(1, math.ceil(w / m)) * m
            raise ValueError(
                f"{self.name} needs H and W divisible by {m}; got {h}x{w}: pad or resize to {good_h}x{good_w}"
            )

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ValueError unless `x` is (B, in_channels, H, W) with an acceptable H and W."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} needs a (B, {self.in_channels}, H, W) tensor; got shape {tuple(x.shape)}"
            )
        self.check_input_size(int(x.shape[-2]), int(x.shape[-1]))

    @property
    @abc.abstractmethod
    def output_conv(self) -> nn.Conv2d:
        """The last convolution (what ResidualWrapper zero-initialises); every model names its own."""


def _init_conv(conv: nn.Conv2d | nn.ConvTranspose2d, nonlinearity: str, slope: float = 0.0) -> None:
    # He initialisation for the activation that follows: PyTorch's default (kaiming_uniform with
    # a=sqrt(5)) shrinks the signal layer by layer, which slows deep plain U-Nets early in training.
    nn.init.kaiming_normal_(conv.weight, a=slope, nonlinearity=nonlinearity)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


# --------------------------------------------------------------------------------------------------
# The paper's "costumed U-Net": Lehtinen et al. 2018 (Noise2Noise), appendix table 2.
# --------------------------------------------------------------------------------------------------


class N2NUNet(Model):
    """Noise2Noise U-Net (Lehtinen et al. 2018, table 2): 3x3 convs, leaky ReLU 0.1, 5 max-poolings,
    nearest-neighbour 2x upsampling, skip concatenations, linear 3x3 output.

    Args:
        in_channels: input channels n (3 for RGB, 1 for luma).
        out_channels: output channels m (3 for restoration of RGB, 1 for a binary seg logit).
        width: encoder channels (48 in the paper); the decoder uses 2*width (96), and the last two
            decoder convs 4/3*width and 2/3*width (64 and 32 at width 48).
        full_skip: beyond the paper: the full-resolution decoder stage gets the first encoder stage's
            features (width more channels) besides the input, so that it sees full-resolution features and
            not only half-resolution ones upsampled (`train run --full-skip`; for thin strokes' edges).

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W); H and W divisible by 32.
    """

    name = "n2n_unet"
    size_multiple = 32  # 5 poolings of 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 48, full_skip: bool = False):
        super().__init__(in_channels, out_channels)
        if width < 1:
            raise ValueError(f"n2n_unet needs width >= 1; got {width}")
        self.full_skip = full_skip
        w, w2 = width, 2 * width
        c1a = max(1, round(64 * width / 48))
        c1b = max(1, round(32 * width / 48))

        def conv(cin: int, cout: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, 3, padding=1)

        self.enc_conv0 = conv(in_channels, w)
        self.enc_conv1 = conv(w, w)
        self.enc_conv2 = conv(w, w)
        self.enc_conv3 = conv(w, w)
        self.enc_conv4 = conv(w, w)
        self.enc_conv5 = conv(w, w)
        self.enc_conv6 = conv(w, w)
        self.dec_conv5a = conv(w + w, w2)  # upsampled enc_conv6 + pool4
        self.dec_conv5b = conv(w2, w2)
        self.dec_conv4a = conv(w2 + w, w2)  # + pool3
        self.dec_conv4b = conv(w2, w2)
        self.dec_conv3a = conv(w2 + w, w2)  # + pool2
        self.dec_conv3b = conv(w2, w2)
        self.dec_conv2a = conv(w2 + w, w2)  # + pool1
        self.dec_conv2b = conv(w2, w2)
        self.dec_conv1a = conv(w2 + in_channels + (w if full_skip else 0), c1a)  # + input (+ enc_conv1)
        self.dec_conv1b = conv(c1a, c1b)
        self.dec_conv1c = conv(c1b, out_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                _init_conv(m, "leaky_relu", 0.1)
        _init_conv(self.dec_conv1c, "linear")

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.dec_conv1c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)

        def act(conv: nn.Conv2d, h: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(conv(h), 0.1)

        def up(h: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
            return torch.cat([F.interpolate(h, scale_factor=2.0, mode="nearest"), skip], dim=1)

        h = act(self.enc_conv1, act(self.enc_conv0, x))
        full = torch.cat([x, h], dim=1) if self.full_skip else x
        pool1 = F.max_pool2d(h, 2)
        pool2 = F.max_pool2d(act(self.enc_conv2, pool1), 2)
        pool3 = F.max_pool2d(act(self.enc_conv3, pool2), 2)
        pool4 = F.max_pool2d(act(self.enc_conv4, pool3), 2)
        pool5 = F.max_pool2d(act(self.enc_conv5, pool4), 2)
        h = act(self.enc_conv6, pool5)
        h = act(self.dec_conv5b, act(self.dec_conv5a, up(h, pool4)))
        h = act(self.dec_conv4b, act(self.dec_conv4a, up(h, pool3)))
        h = act(self.dec_conv3b, act(self.dec_conv3a, up(h, pool2)))
        h = act(self.dec_conv2b, act(self.dec_conv2a, up(h, pool1)))
        h = act(self.dec_conv1b, act(self.dec_conv1a, up(h, full)))
        return self.dec_conv1c(h)


# --------------------------------------------------------------------------------------------------
# MultiResUNet: Ibtehaz & Rahman 2020.
# --------------------------------------------------------------------------------------------------


class _ConvBN(nn.Sequential):
    """Conv (no bias, BatchNorm follows) + BatchNorm (+ ReLU): the paper's `conv2d_bn`."""

    def __init__(self, cin: int, cout: int, kernel: int, relu: bool):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _MultiResBlock(nn.Module):
    """Chain of three 3x3 conv-BN-ReLU (receptive fields 3, 5, 7) with W/6, W/3, W/2 filters, W = alpha*U,
    concatenated, plus a 1x1 conv-BN shortcut; then ReLU and BatchNorm."""

    def __init__(self, cin: int, u: int, alpha: float):
        super().__init__()
        w = alpha * u
        c3, c5, c7 = max(1, int(w * 0.167)), max(1, int(w * 0.333)), max(1, int(w * 0.5))
        self.out_channels = c3 + c5 + c7
        self.shortcut = _ConvBN(cin, self.out_channels, 1, relu=False)
        self.conv3 = _ConvBN(cin, c3, 3, relu=True)
        self.conv5 = _ConvBN(c3, c5, 3, relu=True)
        self.conv7 = _ConvBN(c5, c7, 3, relu=True)
        self.bn_cat = nn.BatchNorm2d(self.out_channels)
        self.bn_out = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.conv3(x)
        b = self.conv5(a)
        c = self.conv7(b)
        h = self.bn_cat(torch.cat([a, b, c], dim=1)) + self.shortcut(x)
        return self.bn_out(F.relu(h))


class _ResPath(nn.Module):
    """`length` residual units (3x3 conv-BN-ReLU + 1x1 conv-BN shortcut, add, ReLU, BN) on a skip."""

    def __init__(self, cin: int, cout: int, length: int):
        super().__init__()
        self.convs = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        self.bns = nn.ModuleList()
        for i in range(length):
            c = cin if i == 0 else cout
            self.convs.append(_ConvBN(c, cout, 3, relu=True))
            self.shortcuts.append(_ConvBN(c, cout, 1, relu=False))
            self.bns.append(nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, shortcut, bn in zip(self.convs, self.shortcuts, self.bns):
            x = bn(F.relu(conv(x) + shortcut(x)))
        return x


class MultiResUNet(Model):
    """MultiResUNet (Ibtehaz & Rahman 2020): MultiRes blocks instead of double convs, Res paths of
    length 4, 3, 2, 1 on the skips, 4 max-poolings, 2x2 transposed-conv upsampling, linear 1x1 output
    (the paper's sigmoid is dropped: restoration outputs are values, seg outputs are logits).

    Args:
        in_channels, out_channels: as for every model.
        width: U of the first level (32 in the paper); level k uses U * 2**k.
        alpha: MultiRes block scale, W = alpha * U (1.67 in the paper).

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W); H and W divisible by 16.
    """

    name = "multiresunet"
    size_multiple = 16  # 4 poolings of 2

    def __init__(self, in_channels: int = 3, out_channels: int = 3, width: int = 32, alpha: float = 1.67):
        super().__init__(in_channels, out_channels)
        if width < 1 or alpha <= 0:
            raise ValueError(f"multiresunet needs width >= 1 and alpha > 0; got {width}, {alpha}")
        us = [width * 2**k for k in range(5)]
        self.enc = nn.ModuleList()
        self.paths = nn.ModuleList()
        c = in_channels
        for k in range(4):
            block = _MultiResBlock(c, us[k], alpha)
            self.enc.append(block)
            self.paths.append(_ResPath(block.out_channels, us[k], length=4 - k))
            c = block.out_channels
        self.bottom = _MultiResBlock(c, us[4], alpha)
        c = self.bottom.out_channels
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for k in reversed(range(4)):
            self.ups.append(nn.ConvTranspose2d(c, us[k], 2, stride=2))
            block = _MultiResBlock(us[k] + us[k], us[k], alpha)  # upsampled + Res path output
            self.dec.append(block)
            c = block.out_channels
        self.head = nn.Conv2d(c, out_channels, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                _init_conv(m, "relu")
        _init_conv(self.head, "linear")

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        h = x
        for block, path in zip(self.enc, self.paths):
            h = block(h)
            skips.append(path(h))
            h = F.max_pool2d(h, 2)
        h = self.bottom(h)
        for up, block, skip in zip(self.ups, self.dec, reversed(skips)):
            h = block(torch.cat([up(h), skip], dim=1))
        return self.head(h)


# --------------------------------------------------------------------------------------------------
# segmentation_models_pytorch and torchvision models behind the same contract.
# --------------------------------------------------------------------------------------------------

_SMP_ARCHS = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "linknet": "Linknet",
    "manet": "MAnet",
    "deeplabv3": "DeepLabV3",
}
# Arguments create_model sets itself; passing them through **kw would bypass its contract.
_SMP_RESERVED = {"encoder_name", "encoder_weights", "in_channels", "classes", "activation", "aux_params"}


class SmpModel(Model):
    """A segmentation_models_pytorch architecture with a randomly initialised encoder.

    Args:
        arch: registry name (unet, unetplusplus, linknet, manet, deeplabv3).
        in_channels, out_channels: as for every model (smp's `in_channels`, `classes`).
        width: decoder width. unet/unetplusplus/manet: channels of the last decoder stage, doubling
            per stage up (16 gives smp's default (256, 128, 64, 32, 16)); deeplabv3: ASPP channels / 16
            (16 gives smp's 256). linknet has no width: its decoder follows the encoder.
        encoder: smp encoder name (default resnet34). Weights are never downloaded.
        **kw: other keyword arguments of the smp class (e.g. encoder_depth, decoder_attention_type).

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W); H and W divisible by the encoder's
    output stride (32; 8 for deeplabv3). deeplabv3 needs batch >= 2 in training mode.
    """

    def __init__(
        self,
        arch: str,
        in_channels: int = 3,
        out_channels: int = 3,
        width: int | None = None,
        encoder: str = "resnet34",
        **kw: Any,
    ):
        self.name = arch
        super().__init__(in_channels, out_channels)
        import segmentation_models_pytorch as smp

        bad = sorted(_SMP_RESERVED & kw.keys())
        if bad:
            raise ValueError(
                f"{arch}: {', '.join(bad)} are set by create_model (use encoder=, in_channels=, out_channels=; "
                "no pretrained weights are downloaded, outputs are linear)"
            )
        if width is not None:
            if width < 1:
                raise ValueError(f"{arch} needs width >= 1; got {width}")
            if "decoder_channels" in kw:
                raise ValueError(f"{arch}: give width or decoder_channels, not both")
            if arch in ("unet", "unetplusplus", "manet"):
                depth = kw.get("encoder_depth", 5)
                kw["decoder_channels"] = tuple(width * 2**k for k in reversed(range(depth)))
                if arch == "manet" and "decoder_pab_channels" not in kw:
                    kw["decoder_pab_channels"] = 4 * width
            elif arch == "deeplabv3":
                kw["decoder_channels"] = 16 * width
            else:
                raise ValueError(
                    f"{arch} has no width option (its decoder channels follow the encoder); leave width unset"
                )
        try:
            self.net = getattr(smp, _SMP_ARCHS[arch])(
                encoder_name=encoder,
                encoder_weights=None,
                in_channels=in_channels,
                classes=out_channels,
                **kw,
            )
        except KeyError as e:  # smp reports an unknown encoder as KeyError with the valid names
            raise ValueError(f"{arch}: {e.args[0] if e.args else e}") from None
        self.size_multiple = int(self.net.encoder.output_stride)

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.net.segmentation_head[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        if self.training and self.name == "deeplabv3" and x.shape[0] < 2:
            # The ASPP image-pooling branch BatchNorms one value per channel; torch refuses that at batch 1.
            raise ValueError("deeplabv3 needs a batch of at least 2 in training mode; got 1")
        return self.net(x)


class FCNModel(Model):
    """FCN with a dilated ResNet backbone (torchvision), random weights, no auxiliary head.

    Args:
        in_channels, out_channels: as for every model (the stem conv is replaced when in_channels != 3).
        backbone: "resnet101" (the paper's FCN 101, default) or "resnet50".

    Shapes: (B, in_channels, H, W) -> (B, out_channels, H, W); H and W divisible by 8 (the output
    stride; torchvision would bilinearly resize other sizes, blurring the alignment we need).
    """

    name = "fcn"
    size_multiple = 8

    def __init__(self, in_channels: int = 3, out_channels: int = 3, backbone: str = "resnet101"):
        super().__init__(in_channels, out_channels)
        from torchvision.models import segmentation as tvseg

        builders = {"resnet50": tvseg.fcn_resnet50, "resnet101": tvseg.fcn_resnet101}
        if backbone not in builders:
            raise ValueError(f"fcn backbone must be one of {sorted(builders)}; got {backbone!r}")
        self.net = builders[backbone](
            weights=None, weights_backbone=None, num_classes=out_channels, aux_loss=False
        )
        if in_channels != 3:
            old = self.net.backbone.conv1
            self.net.backbone.conv1 = nn.Conv2d(
                in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False
            )
            _init_conv(self.net.backbone.conv1, "relu")

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.net.classifier[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.net(x)["out"]


class ResidualWrapper(Model):
    """Global residual: output = input + net(input), with the net's last conv zero-initialised, so the
    model starts as the identity and learns only the correction (docs/design.md, the identity trap).

    Needs in_channels == out_channels. Shapes and size rule are the wrapped model's.
    """

    def __init__(self, net: Model):
        self.name = net.name
        super().__init__(net.in_channels, net.out_channels)
        if net.in_channels != net.out_channels:
            raise ValueError(
                f"residual output needs in_channels == out_channels; {net.name} has {net.in_channels} -> "
                f"{net.out_channels} (seg mode predicts logits: use residual=False)"
            )
        self.net = net
        self.size_multiple = net.size_multiple
        nn.init.zeros_(net.output_conv.weight)
        if net.output_conv.bias is not None:
            nn.init.zeros_(net.output_conv.bias)

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.net.output_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------

MODELS: dict[str, Callable[..., Model]] = {
    "n2n_unet": N2NUNet,
    "multiresunet": MultiResUNet,
    "unet": functools.partial(SmpModel, "unet"),
    "unetplusplus": functools.partial(SmpModel, "unetplusplus"),
    "linknet": functools.partial(SmpModel, "linknet"),
    "manet": functools.partial(SmpModel, "manet"),
    "deeplabv3": functools.partial(SmpModel, "deeplabv3"),
    "fcn": FCNModel,
}
"""Model name -> constructor(in_channels, out_channels, [width], **kw). The CLI offers sorted(MODELS)."""

class GatedWrapper(Model):
    """Gated output: the net predicts an image and a gate g; output = input + sigmoid(g) * (image - input).

    Where the gate is shut the output is the input, exactly enough that the residual mask stays empty,
    so the network no longer has to redraw every speckle of the background to leave it alone; where it
    opens the network's image replaces the input. Nothing but the usual restoration loss trains it (the
    gate is not supervised), so in n2n mode it stays label-free. The gate starts mostly shut (bias -2,
    sigmoid 0.12). Built around a net with in_channels + 1 outputs.
    """

    GATE_BIAS = -2.0

    def __init__(self, net: Model, channels: int):
        self.name = net.name
        super().__init__(channels, channels)
        if net.out_channels != channels + 1:
            raise ValueError(f"gated output needs a net with {channels + 1} outputs; {net.name} has {net.out_channels}")
        self.net = net
        self.size_multiple = net.size_multiple
        if net.output_conv.bias is not None:
            with torch.no_grad():
                net.output_conv.bias[-1] = self.GATE_BIAS

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.net.output_conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        c = self.out_channels
        return x + torch.sigmoid(y[:, c:c + 1]) * (y[:, :c] - x)


NO_WIDTH = frozenset({"fcn", "linknet"})
"""Models without a width option (their decoder follows the encoder)."""


def create_model(
    name: str,
    in_channels: int = 3,
    out_channels: int = 3,
    width: int | None = None,
    residual: bool = False,
    gated: bool = False,
    **kw: Any,
) -> Model:
    """Build a registered model with random weights (nothing is downloaded).

    Args:
        name: a key of MODELS.
        in_channels: input channels (3 for RGB).
        out_channels: output channels (3 for restoration, 1 or n_classes for seg logits).
        width: model-specific base width (n2n_unet 48, multiresunet 32, smp decoders 16); None keeps the
            default. Models without one (linknet, fcn) refuse a width.
        residual: wrap in ResidualWrapper (output = input + net(input), starts as identity); needs
            in_channels == out_channels.
        gated: wrap in GatedWrapper (output = input + sigmoid(gate) * (image - input)); the net gets
            one extra output channel; needs in_channels == out_channels.
        **kw: model-specific options (smp: encoder=..., fcn: backbone=..., multiresunet: alpha=...).

    Returns:
        A Model mapping (B, in_channels, H, W) -> (B, out_channels, H, W), with `size_multiple`,
        `check_input_size(h, w)` and `model_config` (the arguments that rebuild it: `create_model(**cfg)`).
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(sorted(MODELS))}")
    if width is not None and name in NO_WIDTH:
        raise ValueError(f"{name} has no width option; leave width unset")
    args = dict(kw)
    if width is not None:
        args["width"] = width
    if residual and gated:
        raise ValueError("choose residual or gated output, not both")
    if gated and in_channels != out_channels:
        raise ValueError(f"gated output needs in_channels == out_channels; got {in_channels} -> {out_channels}")
    model = MODELS[name](in_channels=in_channels, out_channels=out_channels + int(gated), **args)
    if residual:
        model = ResidualWrapper(model)
    if gated:
        model = GatedWrapper(model, out_channels)
    model.model_config = dict(
        name=name, in_channels=in_channels, out_channels=out_channels, width=width, residual=residual, **kw
    )
    if gated:
        model.model_config["gated"] = True
    return model


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
