"""The analytical FLOPs / parameter cost model against fvcore and the published reference values."""

import random

import pytest

from detnas_d2.cost import BackboneCostModel, backbone_flops, fvcore_conv_linear_flops
from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed
from detnas_d2.space.backbone import WIDENED_LARGE_LAYOUT, BackboneSearchSpace, get_architecture


def _trainable_params(net):
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "space, width_mult, input_size, seed",
    [
        ("small", 1.0, 224, 0),
        ("small", 0.5, (192, 160), 1),
        ("large", 1.0, 224, 2),
        ("large", 0.25, (160, 96), 3),
    ],
)
def test_fast_flops_and_params_equal_fvcore_and_module_counts(space, width_mult, input_size, seed):
    arch = BackboneSearchSpace(space).sample(random.Random(seed))
    cost_model = BackboneCostModel(space, width_mult=width_mult, input_size=input_size)
    for include_classifier in (False, True):
        num_classes = 1000 if include_classifier else None
        net = ShuffleNetV2Fixed(arch, space=space, width_mult=width_mult, num_classes=num_classes)
        assert cost_model.flops(arch, include_classifier) == fvcore_conv_linear_flops(net, input_size)
        assert cost_model.params(arch, include_classifier) == _trainable_params(net)


@pytest.mark.parametrize("style, norm, norm_affine", [("spos", "BN", False), ("detnas", "FrozenBN", False)])
def test_param_count_follows_style_and_norm(style, norm, norm_affine):
    arch = get_architecture("SPOS").encoding
    net = ShuffleNetV2Fixed(arch, width_mult=0.5, num_classes=10, style=style, norm=norm, norm_affine=norm_affine)
    cost_model = BackboneCostModel("small", 0.5, style=style, norm_affine=norm_affine, num_classes=10)
    assert cost_model.params(arch, include_classifier=True) == _trainable_params(net)


def test_named_widened_architecture_costs_use_its_own_layout():
    arch = "DetNASNet-3.8G"
    wide = BackboneCostModel("large", layout=WIDENED_LARGE_LAYOUT)
    assert backbone_flops(arch) == wide.flops(arch)
    assert backbone_flops(arch) > 2.5 * backbone_flops("DetNASNet")
    net = ShuffleNetV2Fixed(arch, width_mult=0.25)
    assert backbone_flops(arch, width_mult=0.25, input_size=64) == fvcore_conv_linear_flops(net, 64)


def test_published_reference_values():
    # DetNAS search constraint: 300M, backbone only (stem + blocks), at 224x224
    assert backbone_flops("COCO-FPN-300M") <= 300e6
    assert backbone_flops("COCO-RetinaNet-300M") <= 300e6
    # SPOS "323M" is the full-classifier count; DetNASNet's "1.3G" label is the full network
    assert round(backbone_flops("SPOS", include_classifier=True) / 1e6) == 323
    assert round(backbone_flops("DetNASNet", include_classifier=True) / 1e8) == 13
    assert backbone_flops("SPOS") < backbone_flops("SPOS", include_classifier=True)


def test_bounds_are_attained_by_per_position_extremes():
    cost_model = BackboneCostModel("small")
    for metric in ("flops", "params"):
        for include_classifier in (False, True):
            low, high = cost_model.bounds(metric, include_classifier)
            values = [[getattr(cost, metric) for cost in row] for row in cost_model.table]
            cheapest = [row.index(min(row)) for row in values]
            dearest = [row.index(max(row)) for row in values]
            cost = cost_model.cost
            assert low == getattr(cost(cheapest, include_classifier), metric)
            assert high == getattr(cost(dearest, include_classifier), metric)
            assert low < getattr(cost("COCO-FPN-300M", include_classifier), metric) < high
    with pytest.raises(ValueError, match="metric must be 'flops' or 'params'"):
        cost_model.bounds("latency")


def test_cost_model_validates_architectures():
    with pytest.raises(ValueError, match="position 3 has value 7"):
        BackboneCostModel("small").flops([0, 0, 0, 7] + [0] * 16)
    with pytest.raises(ValueError, match="belongs to the large space"):
        BackboneCostModel("small").flops("DetNASNet")
