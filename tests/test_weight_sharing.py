"""Kernel sharing between supernet candidates and zero-initialised block outputs (detnas_d2.nn.sharing)."""

import random

import pytest
import torch

from detnas_d2.modeling.weight_inheritance import extract_subnet_state_dict
from detnas_d2.nn.sharing import CenterCropDepthwise
from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed, ShuffleNetV2Supernet


def _supernet(space="small", **kwargs):
    torch.manual_seed(0)
    kwargs = {"width_mult": 0.25, "num_classes": 5, "weight_sharing": "kernel", **kwargs}
    return ShuffleNetV2Supernet(space, **kwargs).eval()


def _paths(space_length, n, seed=0):
    rng = random.Random(seed)
    return [[rng.randrange(4) for _ in range(space_length)] for _ in range(n)]


@pytest.mark.parametrize("space,length", [("small", 20), ("large", 40)])
def test_extracted_subnet_equals_the_shared_supernet_path_exactly(space, length):
    net = _supernet(space, zero_init_last_norm=False)
    with torch.no_grad():  # move the running statistics and affine params away from their init
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    state = net.state_dict()
    x = torch.randn(2, 3, 64, 64)
    for arch in _paths(length, 3) + [[3] * length, [1] * length]:
        fixed = ShuffleNetV2Fixed(arch, space=space, width_mult=0.25, num_classes=5).eval()
        fixed.load_state_dict(extract_subnet_state_dict(state, arch))
        with torch.no_grad():
            assert torch.equal(net(x, arch=arch)["linear"], fixed(x)["linear"])


def test_sharing_keeps_checkpoint_keys_and_shapes_but_ties_the_weights():
    shared, independent = _supernet(), _supernet(weight_sharing="none")
    shapes = {k: tuple(v.shape) for k, v in shared.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in independent.state_dict().items()}
    assert sum(p.numel() for p in shared.parameters()) < 0.5 * sum(p.numel() for p in independent.parameters())
    position = shared.blocks[5]
    k3, k7 = position.choices["0"].branch_main[3], position.choices["2"].branch_main[3]
    assert isinstance(k3, CenterCropDepthwise) and k3.source is k7
    assert position.choices["0"].branch_main[0] is position.choices["2"].branch_main[0]


def test_a_k3_step_updates_the_centre_of_the_shared_k7_kernel_only():
    net = _supernet().train()
    k7 = net.blocks[5].choices["2"].branch_main[3].weight
    net(torch.randn(4, 3, 64, 64), arch=[0] * 20)["linear"].sum().backward()
    grad = k7.grad
    assert grad[..., 2:5, 2:5].abs().sum() > 0
    ring = grad.clone()
    ring[..., 2:5, 2:5] = 0
    assert ring.abs().sum() == 0


def test_zero_initialised_sharing_supernet_starts_with_every_path_computing_the_same_function():
    net = _supernet(zero_init_last_norm=True, num_classes=None).train()
    x = torch.randn(8, 3, 64, 64)
    with torch.no_grad():
        reference = net(x, arch=[0] * 20)["res5"]
        for arch in _paths(20, 4):
            assert torch.allclose(net(x, arch=arch)["res5"], reference, atol=1e-5)
    independent = _supernet(weight_sharing="none", zero_init_last_norm=True, num_classes=None).train()
    with torch.no_grad():
        a, b = (independent(x, arch=arch)["res5"] for arch in _paths(20, 2))
    assert not torch.allclose(a, b, atol=1e-3)  # without sharing the stride-2 blocks already differ


def test_sharing_supernet_round_trips_through_its_state_dict():
    net, fresh = _supernet(), _supernet()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    fresh.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for arch in _paths(20, 3):
            assert torch.equal(net(x, arch=arch)["linear"], fresh(x, arch=arch)["linear"])


def test_bad_weight_sharing_mode_is_named():
    with pytest.raises(ValueError, match="weight_sharing must be one of"):
        ShuffleNetV2Supernet("small", width_mult=0.25, weight_sharing="all")


def test_independent_candidates_are_refused_by_a_sharing_supernet_naming_both_modes(tmp_path):
    """A published (independent-candidate) checkpoint must not load as a silent hybrid of its aliases."""
    independent = _supernet(weight_sharing="none")
    with pytest.raises(ValueError, match="WEIGHT_SHARING 'kernel'.*WEIGHT_SHARING 'none'"):
        _supernet().load_state_dict(independent.state_dict())
    # through the detectron2 checkpointer a user's MODEL.WEIGHTS takes
    from detnas_d2.modeling.checkpoint import DetNASCheckpointer

    torch.save({"model": independent.state_dict()}, tmp_path / "independent.pth")
    with pytest.raises(ValueError, match="independent candidates"):
        DetNASCheckpointer(_supernet()).load(str(tmp_path / "independent.pth"))


def test_a_sharing_checkpoint_loads_into_both_modes_with_every_path_unchanged():
    shared = _supernet(zero_init_last_norm=False)
    with torch.no_grad():
        for p in shared.parameters():
            p.add_(0.01 * torch.randn_like(p))
    x = torch.randn(2, 3, 64, 64)
    for mode in ("kernel", "none"):
        loaded = _supernet(weight_sharing=mode)
        loaded.load_state_dict(shared.state_dict())
        with torch.no_grad():
            for arch in _paths(20, 3):
                assert torch.equal(loaded(x, arch=arch)["linear"], shared(x, arch=arch)["linear"])
