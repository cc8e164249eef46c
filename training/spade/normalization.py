"""Layers the SPADE family shares: the SPADE normalization, conv + norm pairs, spectral norm,
and the reference's weight initialisation.

Spectral norm is a `torch.nn.utils.parametrizations.spectral_norm` while training; for inference
`fold_spectral_norm` makes a copy that stores W / sigma as a plain weight, with `config["spectral"]`
False, so `from_pretrained` rebuilds it without the parametrization and inference pays nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm

from ...errors import DrivesimError

# the parameter-free normalizations inside SPADE (the reference's SyncBatchNorm is "batch"; the
# task swaps in torch's SyncBatchNorm when it trains on several GPUs)
SPADE_NORMS = ("batch", "instance")
# the normalizations after a plain conv (pix2pixHD, PatchGAN, encoder, ASAPNet's low-res stream)
CONV_NORMS = ("instance", "instanceaffine", "batch", "none")


def check_choice(value: str, valid: tuple[str, ...], what: str) -> str:
    if value not in valid:
        raise DrivesimError(f"unknown {what} '{value}'; valid: {', '.join(valid)}")
    return value


def spectral(module: nn.Module, enabled: bool) -> nn.Module:
    """`module` with spectral norm on its weight when `enabled` (one power iteration per training step)."""
    return spectral_norm(module) if enabled else module


def conv_norm(conv: nn.Module, norm: str, spectral_on: bool) -> nn.Module:
    """A conv followed by `norm`, as the reference's non-SPADE norm layers: the conv loses its bias
    (a norm cancels it) and the pair is `Sequential(conv, norm)`; with norm "none", the conv alone."""
    check_choice(norm, CONV_NORMS, "normalization")
    if norm == "none":
        return spectral(conv, spectral_on)
    conv.bias = None
    channels = conv.out_channels
    if norm == "batch":
        layer = nn.BatchNorm2d(channels, affine=True)
    else:
        layer = nn.InstanceNorm2d(channels, affine=norm == "instanceaffine")
    return nn.Sequential(spectral(conv, spectral_on), layer)


class SPADE(nn.Module):
    """Spatially-adaptive normalization (Park et al. 2019).

    x `b c h w`, seg `b l H W` -> `b c h w`: x normalized without parameters, then scaled by
    (1 + gamma) and shifted by beta, both predicted per pixel from `seg` resized (nearest) to h w.
    In eval mode a batch norm's running statistics are folded into the gamma and beta convolutions
    (x * gamma' + beta' in one pass over x; the same result up to float rounding).
    """

    def __init__(self, channels: int, label_nc: int, *, norm: str = "batch", kernel_size: int = 3,
                 hidden: int = 128):
        super().__init__()
        check_choice(norm, SPADE_NORMS, "SPADE normalization")
        if norm == "batch":
            self.param_free_norm = nn.BatchNorm2d(channels, affine=False)
        else:
            self.param_free_norm = nn.InstanceNorm2d(channels, affine=False)
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, kernel_size, padding=pad), nn.ReLU(inplace=True))
        self.mlp_gamma = nn.Conv2d(hidden, channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden, channels, kernel_size, padding=pad)

    def forward(self, x: Tensor, seg: Tensor) -> Tensor:
        if seg.shape[-2:] != x.shape[-2:]:
            seg = F.interpolate(seg, size=x.shape[-2:], mode="nearest")
        actv = self.mlp_shared(seg)
        norm = self.param_free_norm
        if not self.training and isinstance(norm, nn.modules.batchnorm._BatchNorm) and norm.track_running_stats:
            return self._folded(x, actv, norm)
        return torch.addcmul(self.mlp_beta(actv), norm(x), 1 + self.mlp_gamma(actv))

    def _folded(self, x: Tensor, actv: Tensor, norm: nn.Module) -> Tensor:
        """(x - mean) / std * (1 + gamma) + beta = x * gamma' + beta', with gamma' = (1 + gamma) / std
        and beta' = beta - mean / std * (1 + gamma), both linear in the convolutions' weights."""
        scale = torch.rsqrt(norm.running_var + norm.eps)
        shift = -norm.running_mean * scale
        g, b = self.mlp_gamma, self.mlp_beta
        gamma = F.conv2d(actv, g.weight * scale[:, None, None, None], (g.bias + 1) * scale, padding=g.padding)
        beta = F.conv2d(actv, b.weight + g.weight * shift[:, None, None, None], b.bias + (g.bias + 1) * shift,
                        padding=b.padding)
        return beta.addcmul_(x, gamma) if beta.dtype == x.dtype else torch.addcmul(beta, x, gamma)


# ----- spectral norm: folding for inference, the reference's state-dict names ----------------------
REFERENCE_SUFFIXES = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
                      "weight_v": "parametrizations.weight.0._v"}


def rename_reference_spectral(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The reference's `torch.nn.utils.spectral_norm` names (`X.weight_orig`, `X.weight_u`,
    `X.weight_v`) -> ours (`X.parametrizations.weight.original`, `.0._u`, `.0._v`); others unchanged."""
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        out[f"{head}.{REFERENCE_SUFFIXES[leaf]}" if leaf in REFERENCE_SUFFIXES else key] = value
    return out


@torch.no_grad()
def fold_spectral_norm(net: nn.Module) -> nn.Module:
    """A copy of `net` (a network with a `config` of constructor kwargs) without spectral norm:
    each spectral-normed weight becomes the plain weight W / sigma that eval mode computes
    (sigma = u . W v from the stored vectors, no power iteration), and `config["spectral"]` is False.
    `net` itself is left as it is (its training goes on)."""
    state = {}
    for name, module in net.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            plist = module.parametrizations.weight
            sn = plist[0]
            sigma = torch.vdot(sn._u, torch.mv(sn._reshape_weight_to_matrix(plist.original), sn._v))
            state[f"{name}.weight"] = plist.original / sigma
    for key, value in net.state_dict().items():
        if ".parametrizations.weight." not in key:
            state[key] = value.clone()
    with torch.device("meta"):  # no initialisation work, no random numbers drawn
        plain = type(net)(**{**net.config, "spectral": False})
    plain.load_state_dict(state, assign=True)
    return plain.train(net.training)


# ----- initialisation ----------------------------------------------------------------------
@torch.no_grad()
def init_weights(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """The reference's `init_weights("xavier", 0.02)`: conv/linear weights Xavier-normal with `gain`,
    biases 0, batch-norm scales N(1, gain). Spectral-normed weights keep torch's default init:
    the reference's init writes to the computed weight, which the next forward overwrites."""
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d) and module.weight is not None:
            nn.init.normal_(module.weight, 1.0, gain)
            nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            if not parametrize.is_parametrized(module, "weight"):
                nn.init.xavier_normal_(module.weight, gain=gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    return net
