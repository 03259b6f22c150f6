"""Candidate blocks, supernet vs fixed networks, weight inheritance, norms and initialisation."""

import random

import pytest
import torch
from torch import nn

from detnas_d2.modeling.weight_inheritance import extract_subnet_checkpoint, extract_subnet_state_dict
from detnas_d2.nn.blocks import CandidateBlock, split_channels
from detnas_d2.nn.norm import FrozenBatchNorm2d, norm_factory
from detnas_d2.nn.shufflenet import ShuffleNetV2Fixed, ShuffleNetV2Supernet, build_shufflenet
from detnas_d2.space.backbone import BackboneSearchSpace, get_architecture

BN = norm_factory("BN")


def test_channel_split_is_variant_2_even_passthrough_odd_processed():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    passthrough, processed = split_channels(x)
    assert passthrough.flatten().tolist() == [0, 2, 4, 6]
    assert processed.flatten().tolist() == [1, 3, 5, 7]
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        split_channels(torch.zeros(1, 6, 2, 2))


@pytest.mark.parametrize("choice", [0, 1, 2, 3])
def test_stride1_block_passes_even_channels_and_processes_odd_ones(choice):
    torch.manual_seed(0)
    block = CandidateBlock(choice, 16, 16, 1, BN).eval()
    x = torch.randn(2, 16, 8, 8)
    out = block(x)
    assert out.shape == (2, 16, 8, 8)
    assert torch.equal(out[:, :8], x[:, 0::2])
    assert torch.equal(out[:, 8:], block.branch_main(x[:, 1::2]))
    assert not hasattr(block, "branch_proj")
    assert block.branch_main[0].in_channels == 8  # main branch C/2 -> C/2, mid = C_out / 2
    assert block.branch_main[-3].out_channels == 8


@pytest.mark.parametrize("choice, kernel", [(0, 3), (1, 5), (2, 7), (3, 3)])
def test_stride2_block_splits_output_into_projection_and_cout_minus_cin_main(choice, kernel):
    torch.manual_seed(0)
    block = CandidateBlock(choice, 16, 48, 2, BN).eval()
    x = torch.randn(1, 16, 16, 16)
    out = block(x)
    assert out.shape == (1, 48, 8, 8)
    assert torch.equal(out[:, :16], block.branch_proj(x))
    assert torch.equal(out[:, 16:], block.branch_main(x))
    proj_dw, proj_pw = block.branch_proj[0], block.branch_proj[2]
    assert (proj_dw.kernel_size, proj_dw.stride, proj_dw.groups) == ((kernel, kernel), (2, 2), 16)
    assert (proj_pw.in_channels, proj_pw.out_channels) == (16, 16)
    convs = [m for m in block.branch_main if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 16 and convs[-1].out_channels == 32  # C_out - C_in
    assert all(c.bias is None for c in convs)


def test_shufflenet_main_branch_layout_and_mid_width():
    block = CandidateBlock(2, 64, 160, 2, BN)
    conv_in, dw, conv_out = [m for m in block.branch_main if isinstance(m, nn.Conv2d)]
    assert (conv_in.in_channels, conv_in.out_channels) == (64, 80)  # mid = C_out / 2
    assert (dw.kernel_size, dw.stride, dw.groups, dw.padding) == ((7, 7), (2, 2), 80, (3, 3))
    assert (conv_out.in_channels, conv_out.out_channels) == (80, 96)
    relus = [i for i, m in enumerate(block.branch_main) if isinstance(m, nn.ReLU)]
    assert relus == [2, 7]  # no ReLU after the depthwise conv


def test_xception_stride_sits_on_first_depthwise_conv():
    block = CandidateBlock(3, 16, 48, 2, BN)
    convs = [m for m in block.branch_main if isinstance(m, nn.Conv2d)]
    assert [c.groups > 1 for c in convs] == [True, False, True, False, True, False]
    assert [c.stride[0] for c in convs] == [2, 1, 1, 1, 1, 1]
    assert [(c.in_channels, c.out_channels) for c in convs[1::2]] == [(16, 24), (24, 24), (24, 32)]
    seen = []
    convs[1].register_forward_hook(lambda module, inputs, output: seen.append(inputs[0].shape[-1]))
    block(torch.zeros(1, 16, 16, 16))
    assert seen == [8]  # the first 1x1 already runs at the reduced resolution


def test_block_rejects_inconsistent_channels():
    with pytest.raises(ValueError, match="stride-1 block needs in_channels == out_channels"):
        CandidateBlock(0, 16, 32, 1, BN)
    with pytest.raises(ValueError, match="stride-2 block needs out_channels > in_channels"):
        CandidateBlock(0, 32, 32, 2, BN)


def _bn_trained_supernet(space, width_mult, **kwargs):
    """A tiny supernet whose BN running stats were moved by a few train-mode forwards on random paths."""
    torch.manual_seed(0)
    supernet = ShuffleNetV2Supernet(space, width_mult=width_mult, **kwargs)
    rng = random.Random(0)
    search_space = BackboneSearchSpace(space)
    supernet.train()
    with torch.no_grad():
        for _ in range(6):
            supernet(torch.rand(2, 3, 64, 64) * 255, arch=search_space.sample(rng))
    return supernet.eval()


@pytest.mark.parametrize("space, num_classes", [("small", None), ("large", None), ("small", 10)])
def test_supernet_path_equals_fixed_network_with_inherited_weights(space, num_classes):
    out_features = ["res2", "res3", "res4", "res5"] + (["linear"] if num_classes else [])
    supernet = _bn_trained_supernet(space, 0.25, num_classes=num_classes, out_features=out_features)
    assert any(float(m.running_mean.abs().max()) > 0.1 for m in supernet.modules() if isinstance(m, nn.BatchNorm2d))
    x = torch.rand(2, 3, 64, 64) * 255
    search_space = BackboneSearchSpace(space)
    rng = random.Random(1)
    for _ in range(3):
        arch = search_space.sample(rng)
        fixed = ShuffleNetV2Fixed(
            arch, space=space, width_mult=0.25, num_classes=num_classes, out_features=out_features
        )
        fixed.load_state_dict(extract_subnet_state_dict(supernet.state_dict(), arch), strict=True)
        fixed.eval()
        supernet.set_arch(arch)
        with torch.no_grad():
            expected, actual = supernet(x), fixed(x)
        assert list(expected) == out_features == list(actual)
        for name in out_features:
            assert (expected[name] - actual[name]).abs().max().item() <= 1e-5, name


def test_stage_outputs_have_strides_4_to_32_and_stage_channels():
    net = ShuffleNetV2Fixed("COCO-FPN-300M", width_mult=0.25).eval()
    outputs = net(torch.zeros(1, 3, 64, 96))
    assert {k: tuple(v.shape) for k, v in outputs.items()} == {
        "res2": (1, 16, 16, 24),
        "res3": (1, 40, 8, 12),
        "res4": (1, 80, 4, 6),
        "res5": (1, 160, 2, 3),
    }
    assert net.feature_channels == {"res2": 16, "res3": 40, "res4": 80, "res5": 160}
    only_res3 = ShuffleNetV2Fixed("SPOS", width_mult=0.25, out_features=["res3"]).eval()
    assert list(only_res3(torch.zeros(1, 3, 32, 32))) == ["res3"]
    with pytest.raises(ValueError, match="unknown output feature 'linear'; available: res2, res3, res4, res5"):
        ShuffleNetV2Fixed("SPOS", width_mult=0.25, out_features=["linear"])


def test_supernet_forward_runs_exactly_one_candidate_per_position():
    supernet = ShuffleNetV2Supernet("small", width_mult=0.25)
    called = []
    for index, position in enumerate(supernet.blocks):
        for key, candidate in position.choices.items():
            candidate.register_forward_hook(lambda *_, i=index, c=int(key): called.append((i, c)))
    arch = get_architecture("COCO-RetinaNet-300M").encoding
    supernet.set_arch("COCO-RetinaNet-300M")
    assert supernet.arch == arch
    outputs = supernet(torch.rand(1, 3, 64, 64))
    assert called == list(enumerate(arch))
    sum(v.sum() for v in outputs.values()).backward()
    for index, position in enumerate(supernet.blocks):
        for key, candidate in position.choices.items():
            has_grad = all(p.grad is not None for p in candidate.parameters())
            no_grad = all(p.grad is None for p in candidate.parameters())
            assert has_grad if int(key) == arch[index] else no_grad


def test_supernet_path_errors():
    supernet = ShuffleNetV2Supernet("small", width_mult=0.25)
    with pytest.raises(RuntimeError, match="path not set"):
        supernet(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="position 4 has value 5"):
        supernet.set_arch([0] * 4 + [5] + [0] * 15)
    with pytest.raises(ValueError, match="belongs to the large space"):
        supernet.set_arch("DetNASNet")
    with pytest.raises(ValueError, match="has 40 choices but its space needs exactly 20"):
        supernet(torch.zeros(1, 3, 32, 32), arch=[0] * 40)


def test_named_architecture_builds_its_own_space_and_widths():
    net = build_shufflenet("DetNASNet-3.8G", space="small", width_mult=0.25)
    assert isinstance(net, ShuffleNetV2Fixed) and net.space == "large" and len(net.blocks) == 40
    assert net.feature_channels == {"res2": 44, "res3": 108, "res4": 216, "res5": 432}
    assert net.layout.stem_channels == 20  # 72 / 4 = 18, rounded (ties up) to a multiple of 4
    assert isinstance(build_shufflenet(None, space="large", width_mult=0.25), ShuffleNetV2Supernet)
    assert isinstance(build_shufflenet("", width_mult=0.25), ShuffleNetV2Supernet)
    from_string = build_shufflenet("2120-2112-33130031-3132", width_mult=0.25)
    assert from_string.arch == get_architecture("COCO-FPN-300M").encoding


def test_fixed_network_records_architecture_and_refuses_another():
    fpn = ShuffleNetV2Fixed("COCO-FPN-300M", width_mult=0.25)
    retina = ShuffleNetV2Fixed("COCO-RetinaNet-300M", width_mult=0.25)
    ShuffleNetV2Fixed("2120-2112-33130031-3132", width_mult=0.25).load_state_dict(fpn.state_dict())
    with pytest.raises(ValueError) as error:
        retina.load_state_dict(fpn.state_dict(), strict=False)
    message = str(error.value)
    assert "2120-2112-33130031-3132" in message and "COCO-RetinaNet-300M (2311-3213-31113320-3333)" in message
    large = ShuffleNetV2Fixed("DetNASNet", width_mult=0.25)
    with pytest.raises(ValueError, match="00312102-03123320-2113202221310333-13333333.*COCO-FPN-300M"):
        fpn.load_state_dict(large.state_dict(), strict=False)


def test_detector_checkpoint_extraction_keeps_other_keys_and_drops_training_state():
    supernet = ShuffleNetV2Supernet("small", width_mult=0.25)
    state = {f"backbone.bottom_up.body.{k}": v for k, v in supernet.state_dict().items()}
    state["roi_heads.box_predictor.cls_score.weight"] = torch.ones(3, 4)
    checkpoint = {"model": state, "iteration": 99, "optimizer": {}, "__author__": "test"}
    converted = extract_subnet_checkpoint(checkpoint, "COCO-FPN-300M")
    assert set(converted) == {"model", "__author__"}
    fixed = ShuffleNetV2Fixed("COCO-FPN-300M", width_mult=0.25)
    prefix = "backbone.bottom_up.body."
    body_keys = {k[len(prefix) :] for k in converted["model"] if k.startswith(prefix)}
    assert body_keys == set(fixed.state_dict())
    head_key = "roi_heads.box_predictor.cls_score.weight"
    assert converted["model"][head_key] is state[head_key]
    with pytest.raises(ValueError, match=r"position 1: choice 3 is not in the checkpoint .* holds choices \[1\]"):
        extract_subnet_checkpoint(converted, "COCO-RetinaNet-300M")  # a fixed checkpoint is no supernet
    with pytest.raises(ValueError, match="has 40 choices but its space needs exactly 20"):
        extract_subnet_state_dict(supernet.state_dict(), [0] * 40)
    with pytest.raises(ValueError, match="no supernet choice-block weights"):
        extract_subnet_state_dict({"a.weight": torch.zeros(1)}, "SPOS")


def test_norm_choices():
    with pytest.raises(ValueError, match="'FrozenBN' is only allowed for fixed-architecture networks"):
        ShuffleNetV2Supernet("small", width_mult=0.25, norm="FrozenBN")
    with pytest.raises(ValueError, match="unknown norm 'LN'; expected one of BN, SyncBN, GN, FrozenBN"):
        ShuffleNetV2Fixed("SPOS", width_mult=0.25, norm="LN")
    gn = ShuffleNetV2Fixed("SPOS", width_mult=0.25, norm="GN")
    assert all(m.num_groups in (4, 8, 16, 32) for m in gn.modules() if isinstance(m, nn.GroupNorm))
    sync = ShuffleNetV2Supernet("small", width_mult=0.25, norm="SyncBN", bn_momentum=0.01)
    sync_bns = [m for m in sync.modules() if isinstance(m, nn.SyncBatchNorm)]
    assert sync_bns and all(m.momentum == 0.01 for m in sync_bns)
    sync(torch.rand(2, 3, 32, 32), arch="SPOS")  # single process: plain batch statistics
    affine_free = ShuffleNetV2Supernet("small", width_mult=0.25, norm_affine=False)
    assert all(not m.affine for m in affine_free.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_bn_network_matches_bn_network_in_eval_mode():
    bn_net = _bn_trained_supernet("small", 0.25)
    arch = get_architecture("SPOS").encoding
    state = extract_subnet_state_dict(bn_net.state_dict(), arch)
    frozen = ShuffleNetV2Fixed(arch, width_mult=0.25, norm="FrozenBN")
    frozen.load_state_dict(state)
    assert frozen.blocks[0].choices["2"].branch_main[1].__class__ is FrozenBatchNorm2d
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        expected, actual = bn_net(x, arch=arch), frozen.train()(x)  # frozen even in train mode
    for name in expected:
        assert torch.allclose(expected[name], actual[name], rtol=1e-4, atol=1e-4), name


def test_initialisation_follows_the_reference_code():
    torch.manual_seed(0)
    net = ShuffleNetV2Fixed("DetNASNet", num_classes=1000)
    stem = net.stem[0]
    assert stem.bias is not None and torch.all(stem.bias == 0)
    assert abs(stem.weight.std().item() - 0.01) < 0.002
    last = net.blocks[-1].choices["3"].branch_main
    pointwise = last[12]  # 1x1 mid -> out: std 1 / C_in
    assert abs(pointwise.weight.std().item() - 1 / pointwise.weight.shape[1]) < 0.1 / pointwise.weight.shape[1]
    depthwise = last[10]
    assert abs(depthwise.weight.std().item() - 1.0) < 0.1
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 1e-4) for m in norms)
    fc = net.head.classifier
    assert torch.all(fc.bias == 0) and abs(fc.weight.std().item() - 0.01) < 0.001


def test_classifier_head_styles():
    detnas = ShuffleNetV2Fixed("SPOS", width_mult=0.25, num_classes=7).eval()
    spos = ShuffleNetV2Fixed("SPOS", width_mult=0.25, num_classes=7, style="spos").eval()
    assert detnas.head.conv_last[0].bias is not None and detnas.head.classifier.bias is not None
    assert isinstance(detnas.head.dropout_before_pool, nn.Dropout2d) and detnas.head.dropout_before_pool.p == 0.2
    assert spos.stem[0].bias is None and spos.head.conv_last[0].bias is None and spos.head.classifier.bias is None
    assert isinstance(spos.head.dropout_after_pool, nn.Dropout) and spos.head.dropout_after_pool.p == 0.1
    assert detnas.head.conv_last[0].out_channels == 256  # 1024 * 0.25
    assert list(detnas(torch.zeros(2, 3, 64, 64))) == ["linear"]
    assert detnas(torch.zeros(2, 3, 64, 64))["linear"].shape == (2, 7)
    with pytest.raises(ValueError, match="style must be one of"):
        ShuffleNetV2Fixed("SPOS", width_mult=0.25, style="megvii")
