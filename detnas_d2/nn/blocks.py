"""Candidate blocks of the DetNAS / SPOS search space (megvii-model/DetNAS and megvii-model/SinglePathOneShot
code), the stem, and the channel split.

Choice ids: 0 = ShuffleNetV2 k3, 1 = k5, 2 = k7, 3 = Xception-like (three depthwise 3x3 units).

Channel-shuffle convention -- variant 2 everywhere in detnas_d2 (SPOS / ShuffleNet-Series / DetNAS
fixed-arch default): a stride-1 block passes the EVEN-indexed input channels through untouched and
feeds the ODD-indexed ones to its main branch; output = concat(pass-through, main). Using a single
convention from ImageNet pretraining to retraining avoids silently mismatched weights (megvii-model/DetNAS#16: a
mismatched convention gave search AP ~0).

Stride-2 blocks (first of each stage) feed the whole input to both branches: the projection branch
keeps C_in channels, the main branch produces C_out - C_in (Megvii split). Module order
inside ``branch_main`` / ``branch_proj`` mirrors the ShuffleNet-Series code so indices line up.
"""

from typing import Callable, Tuple

import torch
from torch import nn

from ..space.backbone import CHOICE_KERNELS, NUM_CHOICES, XCEPTION_CHOICE

NormFactory = Callable[[int], nn.Module]


def split_channels(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Variant-2 channel split: (even channels = pass-through, odd channels = processed)."""
    if x.shape[1] % 4:
        raise ValueError(f"the channel split needs a channel count divisible by 4, got {x.shape[1]}")
    return x[:, 0::2], x[:, 1::2]


def _depthwise(channels: int, kernel_size: int, stride: int) -> nn.Conv2d:
    """Bias-free depthwise kxk conv with 'same' padding."""
    return nn.Conv2d(channels, channels, kernel_size, stride, kernel_size // 2, groups=channels, bias=False)


def _pointwise(in_channels: int, out_channels: int) -> nn.Conv2d:
    """Bias-free 1x1 conv."""
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)


def _shufflenet_main_branch(c_in, c_mid, c_out, kernel_size, stride, norm: NormFactory) -> nn.Sequential:
    """1x1 + BN + ReLU -> depthwise kxk (stride) + BN -> 1x1 + BN + ReLU."""
    return nn.Sequential(
        _pointwise(c_in, c_mid), norm(c_mid), nn.ReLU(inplace=True),
        _depthwise(c_mid, kernel_size, stride), norm(c_mid),
        _pointwise(c_mid, c_out), norm(c_out), nn.ReLU(inplace=True),
    )  # fmt: skip


def _xception_main_branch(c_in, c_mid, c_out, stride, norm: NormFactory) -> nn.Sequential:
    """Three (depthwise 3x3 + BN, 1x1 + BN + ReLU) units; the stride sits on the first depthwise."""
    layers = []
    for index, (unit_in, unit_out) in enumerate(((c_in, c_mid), (c_mid, c_mid), (c_mid, c_out))):
        layers += [
            _depthwise(unit_in, CHOICE_KERNELS[XCEPTION_CHOICE], stride if index == 0 else 1), norm(unit_in),
            _pointwise(unit_in, unit_out), norm(unit_out), nn.ReLU(inplace=True),
        ]  # fmt: skip
    return nn.Sequential(*layers)


class CandidateBlock(nn.Module):
    """One candidate block (choice 0..3) in its stride-1 or stride-2 form (Megvii reference code).

    Stride 1 needs ``in_channels == out_channels``; main branch C/2 -> C/2 on the odd channels.
    Stride 2: projection branch (depthwise kxk s2 + BN, 1x1 + BN + ReLU) on the whole input, main
    branch C_in -> C_out - C_in; mid width = C_out / 2 in both forms.

    Args:
        choice: candidate id: 0 = ShuffleNetV2 k3, 1 = k5, 2 = k7, 3 = Xception-like.
        in_channels: input channels.
        out_channels: output channels.
        stride: 1 or 2 (the first block of a stage).
        norm: ``make(channels)`` building each normalisation layer.
    """

    def __init__(self, choice: int, in_channels: int, out_channels: int, stride: int, norm: NormFactory):
        super().__init__()
        if choice not in range(NUM_CHOICES):
            raise ValueError(f"block choice must be 0..3, got {choice!r}")
        if stride not in (1, 2):
            raise ValueError(f"block stride must be 1 or 2, got {stride!r}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"a stride-1 block needs in_channels == out_channels, got {in_channels}, {out_channels}")
        if stride == 2 and out_channels <= in_channels:
            raise ValueError(f"a stride-2 block needs out_channels > in_channels, got {in_channels}, {out_channels}")
        self.choice = choice
        self.stride = stride
        kernel_size = CHOICE_KERNELS[choice]
        mid_channels = out_channels // 2
        main_in = in_channels // 2 if stride == 1 else in_channels
        main_out = out_channels - main_in
        if choice == XCEPTION_CHOICE:
            self.branch_main = _xception_main_branch(main_in, mid_channels, main_out, stride, norm)
        else:
            self.branch_main = _shufflenet_main_branch(main_in, mid_channels, main_out, kernel_size, stride, norm)
        if stride == 2:
            self.branch_proj = nn.Sequential(
                _depthwise(in_channels, kernel_size, 2), norm(in_channels),
                _pointwise(in_channels, in_channels), norm(in_channels), nn.ReLU(inplace=True),
            )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """concat(pass-through or projection, main branch)."""
        if self.stride == 1:
            passthrough, processed = split_channels(x)
            return torch.cat((passthrough, self.branch_main(processed)), dim=1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), dim=1)


def build_stem(in_channels: int, out_channels: int, norm: NormFactory, bias: bool) -> nn.Sequential:
    """3x3 stride-2 conv + norm + ReLU (no max-pool follows, as in megvii-model/DetNAS)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, 2, 1, bias=bias), norm(out_channels), nn.ReLU(inplace=True)
    )
