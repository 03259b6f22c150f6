"""Weight sharing between the candidates of one supernet position ("kernel" sharing).

With independent candidates (the DetNAS/SPOS reference), every position holds four unrelated blocks, and a
uniformly sampled path through 20 such positions is a different random network at every step: from random
weights the paths do not come to agree in the few thousand steps of a small run (random-path accuracy stays at
chance, see the README's supernet section). Kernel sharing keeps the search space and every candidate's
architecture but ties their weights, as Single-Path NAS and Once-for-All do for kernel sizes:

- the k3 and k5 candidates are views of the k7 candidate: the same 1x1 convs and norms, and the centre 3x3 /
  5x5 of its depthwise kernels (main and projection branch); the k7 kernels start with a zero outer ring, so
  all three compute the same function at first;
- the Xception-like candidate shares the projection branch (centre 3x3), its first 1x1 (in -> mid) and last
  1x1 (mid -> out) with their norms, and runs the centre 3x3 of the k7 kernel (with its norm) as its second
  depthwise conv; its own first and third depthwise convs start as identity kernels, its middle 1x1 as an
  identity matrix and the norm before its extra ReLU with a positive bias, so it starts close to the k3 candidate.

Each candidate still appears under its own name in the state dict, with its own shapes (a view saves its
crop), so fixed networks extract their weights from a sharing supernet exactly as from an independent one. A
checkpoint of independent candidates disagrees where sharing ties names together: loading one into a sharing
supernet is refused (:func:`check_tied_entries`) instead of building a hybrid of whichever alias loads last.
"""

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..space.backbone import CHOICE_KERNELS, XCEPTION_CHOICE

WEIGHT_SHARING_MODES = ("none", "kernel")
#: the candidate that owns the shared weights (the largest kernel)
OWNER_CHOICE = max(range(len(CHOICE_KERNELS)), key=lambda c: (c != XCEPTION_CHOICE, CHOICE_KERNELS[c]))
# module indices inside CandidateBlock branches (see blocks.py)
_MAIN_DW, _MAIN_DW_NORM, _PROJ_DW = 3, 4, 0
_MAIN_SHARED = (0, 1, 2, 4, 5, 6, 7)  # 1x1, norm, relu, norm, 1x1, norm, relu of a ShuffleNet main branch
_X_FIRST_1X1, _X_FIRST_NORM, _X_MID_DW, _X_MID_NORM, _X_MID_1X1, _X_LAST_1X1, _X_LAST_NORM = 2, 3, 5, 6, 7, 12, 13
_X_MID_1X1_NORM = 8
#: initial bias of the norm before the Xception block's extra ReLU: keeps that ReLU nearly linear at the start
_X_EXTRA_RELU_BIAS = 3.0
_X_OWN_DWS = (0, 10)


class CenterCropDepthwise(nn.Module):
    """A depthwise conv whose kernel is the centre ``k x k`` of another (larger) depthwise conv's kernel.

    Holds no parameter of its own; saves the crop under ``weight`` so the state dict has the shape a
    stand-alone ``k x k`` conv would have, and ignores that entry on load (the owner loads the full kernel).
    """

    def __init__(self, source: nn.Conv2d, kernel_size: int, stride: int):
        super().__init__()
        if source.kernel_size[0] < kernel_size or (source.kernel_size[0] - kernel_size) % 2:
            raise ValueError(f"cannot take a centred {kernel_size}x{kernel_size} kernel from {source.kernel_size}")
        object.__setattr__(self, "source", source)  # not a submodule: its weight is saved by its owner
        self.kernel_size, self.stride = kernel_size, stride

    @property
    def weight(self) -> torch.Tensor:
        """The centre crop of the source kernel (a view: gradients reach the source)."""
        offset = (self.source.kernel_size[0] - self.kernel_size) // 2
        w = self.source.weight
        return w[..., offset : offset + self.kernel_size, offset : offset + self.kernel_size] if offset else w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, None, self.stride, self.kernel_size // 2, 1, self.source.groups)

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        weight = self.weight
        destination[prefix + "weight"] = weight if keep_vars else weight.detach().clone()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
        if strict and prefix + "weight" not in state_dict:
            missing.append(prefix + "weight")


def _identity_(conv: nn.Conv2d) -> None:
    """Make a depthwise kxk or a square 1x1 conv an identity map."""
    with torch.no_grad():
        conv.weight.zero_()
        if conv.groups > 1:
            conv.weight[..., conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = 1.0
        else:
            conv.weight[:, :, 0, 0] = torch.eye(conv.weight.shape[0])


def _zero_ring_(conv: nn.Conv2d, inner: int) -> None:
    """Zero a depthwise kernel outside its centre ``inner x inner``, so every centre crop computes the same at init."""
    size = conv.kernel_size[0]
    offset = (size - inner) // 2
    with torch.no_grad():
        centre = conv.weight[..., offset : offset + inner, offset : offset + inner].clone()
        conv.weight.zero_()
        conv.weight[..., offset : offset + inner, offset : offset + inner] = centre


def share_kernels(candidates: Dict[str, nn.Module]) -> None:
    """Tie the weights of one position's candidates (keyed "0".."3") in place, as the module docstring says."""
    owner = candidates[str(OWNER_CHOICE)]
    smallest = min(CHOICE_KERNELS)
    _zero_ring_(owner.branch_main[_MAIN_DW], smallest)
    if owner.stride == 2:
        _zero_ring_(owner.branch_proj[_PROJ_DW], smallest)
    for choice, block in candidates.items():
        if block is owner:
            continue
        kernel = CHOICE_KERNELS[int(choice)]
        main = block.branch_main
        if block.stride == 2:
            proj = block.branch_proj
            proj[_PROJ_DW] = CenterCropDepthwise(owner.branch_proj[_PROJ_DW], kernel, 2)
            for index in range(1, len(proj)):
                proj[index] = owner.branch_proj[index]
        if int(choice) == XCEPTION_CHOICE:
            source = owner.branch_main
            main[_X_FIRST_1X1], main[_X_FIRST_NORM] = source[0], source[1]
            main[_X_LAST_1X1], main[_X_LAST_NORM] = source[5], source[6]
            main[_X_MID_DW], main[_X_MID_NORM] = CenterCropDepthwise(source[_MAIN_DW], kernel, 1), source[_MAIN_DW_NORM]
            for index in _X_OWN_DWS:
                _identity_(main[index])
            _identity_(main[_X_MID_1X1])
            if main[_X_MID_1X1_NORM].affine:
                nn.init.constant_(main[_X_MID_1X1_NORM].bias, _X_EXTRA_RELU_BIAS)
            continue
        main[_MAIN_DW] = CenterCropDepthwise(owner.branch_main[_MAIN_DW], kernel, block.stride)
        for index in _MAIN_SHARED:
            main[index] = owner.branch_main[index]


def tied_entries(position: nn.Module) -> List[Tuple[str, str, int | None]]:
    """``(owner key, alias key, crop)`` for every state-dict entry of ``position`` that sharing ties to another:
    the alias equals the owner's entry (``crop`` None) or its centre ``crop x crop`` (a kernel view)."""
    state = position.state_dict(keep_vars=True)  # held while ids are compared (a crop view is a new tensor)
    owner_of, ties = {}, []
    for name, tensor in state.items():
        owner = owner_of.setdefault(id(tensor), name)
        if owner != name:
            ties.append((owner, name, None))
    for name, module in position.named_modules():
        if isinstance(module, CenterCropDepthwise):
            source = next(n for n, m in position.named_modules() if m is module.source)
            ties.append((f"{source}.weight", f"{name}.weight", module.kernel_size))
    return ties


def check_tied_entries(ties: List[Tuple[str, str, int | None]], state_dict, prefix: str) -> None:
    """Refuse a state dict whose tied entries disagree: it holds independent candidates (WEIGHT_SHARING none)."""
    for owner, alias, crop in ties:
        if prefix + owner not in state_dict or prefix + alias not in state_dict:
            continue
        source, value = state_dict[prefix + owner], state_dict[prefix + alias]
        if crop is not None and source.shape[-1] >= crop:
            offset = (source.shape[-1] - crop) // 2
            source = source[..., offset : offset + crop, offset : offset + crop]
        if source.shape != value.shape or not torch.equal(source, value):
            raise ValueError(
                f"the weights loaded into a supernet with MODEL.DETNAS.WEIGHT_SHARING 'kernel' hold independent "
                f"candidates: {prefix + alias} differs from {prefix + owner}, which 'kernel' ties it to. They were "
                "trained with WEIGHT_SHARING 'none' (the DetNAS/SPOS reference, every published supernet): load "
                "them with MODEL.DETNAS.WEIGHT_SHARING none, or train a sharing supernet (each alias would "
                "otherwise take whichever candidate's tensor loads last)"
            )
