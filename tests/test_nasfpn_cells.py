"""Pure-torch NAS-FPN: the published block's graph and numerics, resampling, attention options, DropBlock, stacking,
odd input sizes, and the one-shot supernet against standalone necks with inherited weights."""

import random

import pytest
import torch
import torch.nn.functional as F

from detnas_d2.nn.nasfpn import (
    NASFPN,
    DropBlock2d,
    MergingCell,
    OneShotNASFPN,
    PyramidBlock,
    plan_pyramid_block,
    resample_to_level,
)
from detnas_d2.space.neck import NeckSearchSpace

# the published block (Ghiasi et al., CVPR 2019, Fig. 7f; tensorflow/tpu nasfpn.py), one row per cell:
# (new node, inputs, input levels, output level, op, attention source (TF), unused nodes summed in, is output)
PUBLISHED_GRAPH = [
    (5, (1, 3), (4, 6), 4, "attention", 3, (), False),
    (6, (1, 5), (4, 4), 4, "sum", None, (), False),
    (7, (0, 6), (3, 4), 3, "sum", None, (), True),
    (8, (6, 7), (4, 3), 4, "sum", None, (), True),
    (9, (7, 8), (3, 4), 5, "attention", 8, (2,), True),  # P5in (node 2) summed into the P5 output
    (10, (6, 9), (4, 5), 7, "attention", 9, (4,), True),  # P7in (node 4) summed into the P7 output
    (11, (9, 10), (5, 7), 6, "attention", 10, (), True),
]
PUBLISHED_OUTPUT_NODES = [7, 8, 9, 11, 10]  # P3, P4, P5, P6, P7


def _pyramid(channels=4, batch=2, p3_size=32):
    """Random P3..P7 with sizes divisible all the way down."""
    return [torch.randn(batch, channels, p3_size >> k, p3_size >> k) for k in range(5)]


def _randomise_norms(module, seed=0):
    """Non-trivial BN statistics and affine parameters, so eval-mode comparisons test them too."""
    generator = torch.Generator().manual_seed(seed)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            shape = bn.running_mean.shape
            bn.running_mean.copy_(torch.randn(shape, generator=generator))
            bn.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            bn.weight.data.copy_(torch.randn(shape, generator=generator))
            bn.bias.data.copy_(torch.randn(shape, generator=generator))


def _reference_resample(x, level, target):
    """Independent resampling: non-overlapping max via reshape, nearest upsampling via repetition."""
    factor = 2 ** abs(target - level)
    if level < target:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // factor, factor, w // factor, factor).amax(dim=(3, 5))
    if level > target:
        return x.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3)
    return x


def _reference_attention(source, other):
    """TF global-pooling attention: source + other * sigmoid(global max of source)."""
    return source + other * torch.sigmoid(source.amax(dim=(2, 3), keepdim=True))


def test_published_block_graph_matches_the_reference_table():
    neck = NASFPN([8, 16, 32], "NAS-FPN", channels=4, num_repeats=2)
    assert len(neck.blocks) == 2
    for block in neck.blocks:
        assert len(block.cells) == len(PUBLISHED_GRAPH)
        for cell, row in zip(block.cells, PUBLISHED_GRAPH):
            plan = cell.plan
            assert (
                plan.node,
                plan.inputs,
                plan.input_levels,
                plan.level,
                plan.op,
                plan.attention_input,
                plan.unused_inputs,
                plan.is_output,
            ) == row
        assert block.output_nodes == PUBLISHED_OUTPUT_NODES
    assert sum(plan.op == "attention" for plan in plan_pyramid_block("NAS-FPN")) == 4


def test_published_block_numerics_match_a_hand_written_reference():
    torch.manual_seed(0)
    block = PyramidBlock("NAS-FPN", channels=4, norm_layer=torch.nn.BatchNorm2d)
    _randomise_norms(block)
    block.eval()
    p3, p4, p5, p6, p7 = _pyramid()
    post = [lambda x, cell=cell: cell.conv_norm(F.relu(x)) for cell in block.cells]
    r = _reference_resample
    with torch.no_grad():
        n5 = post[0](_reference_attention(r(p6, 6, 4), p4))
        n6 = post[1](p4 + n5)
        n7 = post[2](p3 + r(n6, 4, 3))
        n8 = post[3](n6 + r(n7, 3, 4))
        n9 = post[4](_reference_attention(r(n8, 4, 5), r(n7, 3, 5)) + p5)
        n10 = post[5](_reference_attention(r(n9, 5, 7), r(n6, 4, 7)) + p7)
        n11 = post[6](_reference_attention(r(n10, 7, 6), r(n9, 5, 6)))
        expected = [n7, n8, n9, n11, n10]
        outputs = block([p3, p4, p5, p6, p7])
    assert [tuple(o.shape) for o in outputs] == [tuple(e.shape) for e in expected]
    for out, ref in zip(outputs, expected):
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_attention_source_options_and_ties():
    arch = [
        [1, 3, 4, "attention"],
        [1, 5, 4, "attention"],
        [0, 6, 3, "sum"],
        [6, 7, 4, "sum"],
        [7, 8, 5, "attention"],
        [6, 9, 7, "attention"],
        [9, 10, 6, "attention"],
    ]
    sources = {
        mode: [plan.attention_input for plan in plan_pyramid_block(arch, mode)]
        for mode in ("coarser", "finer", "second")
    }
    # cell 1 reads P4in (node 1) and node 5, both P4: a tie -> coarser takes the first, finer the second
    assert sources["coarser"] == [3, 1, None, None, 8, 9, 10]
    assert sources["finer"] == [1, 5, None, None, 7, 6, 9]
    assert sources["second"] == [3, 5, None, None, 8, 9, 10]
    with pytest.raises(ValueError, match=r"attention_source 'left' unknown; allowed: \['coarser', 'finer', 'second'\]"):
        plan_pyramid_block(arch, "left")


@pytest.mark.parametrize("pool, source", [("max", "coarser"), ("avg", "coarser"), ("avg", "finer"), ("max", "second")])
def test_attention_cell_merge_formula(pool, source):
    torch.manual_seed(1)
    plan = plan_pyramid_block("NAS-FPN", source)[0]  # P4 from P4in (node 1) and P6in (node 3)
    cell = MergingCell(plan, channels=4, norm_layer=torch.nn.BatchNorm2d, attention_pool=pool)
    inputs = _pyramid()
    sizes = {level: tuple(x.shape[-2:]) for level, x in zip(range(3, 8), inputs)}
    p4, p6_up = inputs[1], _reference_resample(inputs[3], 6, 4)
    attend, other = (p6_up, p4) if source in ("coarser", "second") else (p4, p6_up)
    weights = attend.amax(dim=(2, 3), keepdim=True) if pool == "max" else attend.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(cell.merge(inputs, sizes), attend + other * torch.sigmoid(weights), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="attention_pool 'min' unknown; allowed: \\['max', 'avg'\\]"):
        MergingCell(plan, channels=4, norm_layer=None, attention_pool="min")


def test_resampling_is_one_max_pool_or_nearest_upsampling():
    x = torch.randn(1, 3, 16, 24)
    for target in (4, 5, 6):
        size = (16 >> (target - 3), 24 >> (target - 3))
        torch.testing.assert_close(resample_to_level(x, 3, target, size), _reference_resample(x, 3, target))
    small = torch.randn(1, 3, 2, 3)
    torch.testing.assert_close(resample_to_level(small, 6, 3, (16, 24)), _reference_resample(small, 6, 3))
    assert resample_to_level(x, 4, 4, (16, 24)) is x
    # odd sizes: ceil-mode pooling keeps the partial last window, upsampling lands on the exact target size
    odd = torch.randn(1, 3, 5, 7)
    pooled = resample_to_level(odd, 3, 4, (3, 4))
    padded = F.pad(odd, (0, 1, 0, 1), value=float("-inf"))
    torch.testing.assert_close(pooled, _reference_resample(padded, 3, 4))
    assert resample_to_level(pooled, 4, 3, (5, 7)).shape[-2:] == (5, 7)


def test_neck_handles_odd_sizes_and_keeps_level_sizes():
    neck = NASFPN([8, 16, 32], channels=4, num_repeats=2).eval()
    features = [torch.randn(1, 8, 13, 19), torch.randn(1, 16, 7, 10), torch.randn(1, 32, 4, 5)]
    with torch.no_grad():
        outputs = neck(features)
    assert [tuple(o.shape[-2:]) for o in outputs] == [(13, 19), (7, 10), (4, 5), (2, 3), (1, 2)]
    assert all(o.shape[:2] == (1, 4) for o in outputs)
    with pytest.raises(ValueError, match="expects 3 features \\(C3, C4, C5\\), got 2"):
        neck(features[:2])
    with pytest.raises(ValueError, match="takes 3 backbone features"):
        NASFPN([8, 16], channels=4)


def test_input_stage_projects_c3_c5_and_max_pools_p6_p7():
    torch.manual_seed(2)
    neck = NASFPN([8, 16, 32], channels=4, num_repeats=1).eval()
    features = [torch.randn(1, 8, 32, 32), torch.randn(1, 16, 16, 16), torch.randn(1, 32, 8, 8)]
    with torch.no_grad():
        pyramid = neck.input_stage(features)
        projected = [stage(x) for stage, x in zip(neck.input_stage.projections, features)]
    assert [p.shape[1] for p in pyramid] == [4] * 5
    for got, want in zip(pyramid[:3], projected):
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(pyramid[3], _reference_resample(projected[2], 5, 6))
    torch.testing.assert_close(pyramid[4], _reference_resample(projected[2], 5, 7))
    assert [type(m).__name__ for m in neck.input_stage.projections[0]] == ["Conv2d", "BatchNorm2d"]
    assert neck.input_stage.projections[0][0].kernel_size == (1, 1)


def test_stacked_blocks_have_their_own_weights():
    channels, repeats = 4, 3
    neck = NASFPN([8, 16, 32], channels=channels, num_repeats=repeats)
    block_params = [{p.data_ptr() for p in block.parameters()} for block in neck.blocks]
    assert all(not (a & b) for i, a in enumerate(block_params) for b in block_params[i + 1 :])
    per_cell = 9 * channels * channels + 2 * channels  # 3x3 conv without bias + BN affine
    input_stage = (8 + 16 + 32) * channels + 3 * 2 * channels
    assert sum(p.numel() for p in neck.parameters()) == input_stage + repeats * 7 * per_cell
    no_norm = NASFPN([8, 16, 32], channels=channels, num_repeats=1, norm_layer=None)
    conv = no_norm.blocks[0].cells[0].conv_norm[0]
    assert conv.bias is not None and isinstance(no_norm.blocks[0].cells[0].conv_norm[1], torch.nn.Identity)


def test_dropblock_drops_whole_blocks_and_preserves_the_sum():
    torch.manual_seed(3)
    ones = torch.ones(4, 8, 32, 32)
    drop = DropBlock2d(drop_prob=0.2, block_size=3)
    assert drop.eval()(ones) is ones
    assert DropBlock2d(0.0).train()(ones) is ones
    out = drop.train()(ones)
    dropped = (out == 0).float()
    kept_values = out[out != 0].unique()
    assert kept_values.numel() == 1  # every kept activation is rescaled by the same factor
    torch.testing.assert_close(out.sum(), ones.sum(), rtol=1e-5, atol=0)
    assert 0.1 < dropped.mean().item() < 0.3
    # the dropped set is a union of whole 3x3 squares: morphological opening leaves it unchanged
    eroded = -F.max_pool2d(-F.pad(dropped, (1, 1, 1, 1), value=0.0), 3, stride=1)
    opened = F.max_pool2d(eroded, 3, stride=1, padding=1)
    assert torch.equal(opened, dropped)
    assert DropBlock2d(0.5, block_size=5).train()(torch.ones(1, 1, 2, 2)).shape == (1, 1, 2, 2)  # clipped block
    with pytest.raises(ValueError, match="block_size must be a positive odd int, got 4"):
        DropBlock2d(0.1, block_size=4)
    with pytest.raises(ValueError, match="drop_prob must be in \\[0, 1\\), got 1.0"):
        DropBlock2d(1.0)


def test_one_shot_path_equals_standalone_neck_with_inherited_weights():
    torch.manual_seed(4)
    supernet = OneShotNASFPN([8, 16, 32], channels=4, num_repeats=2)
    _randomise_norms(supernet)
    supernet.eval()
    features = [torch.randn(2, 8, 32, 32), torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]
    space = NeckSearchSpace(7)
    rng = random.Random(0)
    archs = ["NAS-FPN"] + [space.sample(rng) for _ in range(4)]
    previous = None
    for arch in archs:
        supernet.set_arch(arch)
        standalone = supernet.extract()
        assert type(standalone) is NASFPN and not standalone.training
        assert standalone.arch == space.validate(arch)
        with torch.no_grad():
            shared, alone = supernet(features), standalone(features)
        for a, b in zip(shared, alone):
            assert a.shape == b.shape and (a - b).abs().max().item() <= 1e-5
        if previous is not None:
            assert not torch.allclose(shared[0], previous[0])  # the path really changed
        previous = shared
    # extract(arch) without set_arch, and independence of the copied weights
    standalone = supernet.extract("NAS-FPN")
    assert supernet.arch == space.validate(archs[-1])
    supernet.set_arch("NAS-FPN")
    with torch.no_grad():
        before = supernet(features)
        for p in supernet.parameters():
            p.add_(1.0)
        for a, b in zip(before, standalone(features)):
            assert (a - b).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="neck architecture has 5 cells, expected 7"):
        supernet.set_arch(NeckSearchSpace(5).sample(rng))


def test_level_residual_with_zero_init_output_norms_starts_every_path_as_the_identity():
    torch.manual_seed(5)
    supernet = OneShotNASFPN([8, 16, 32], channels=4, num_repeats=2, level_residual=True, output_norm_init=0.0)
    supernet.eval()
    features = [torch.randn(2, 8, 32, 32), torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]
    with torch.no_grad():
        inputs = supernet.input_stage(features)
        space, rng = NeckSearchSpace(7), random.Random(1)
        for arch in ["NAS-FPN"] + [space.sample(rng) for _ in range(3)]:
            supernet.set_arch(arch)
            for out, inp in zip(supernet(features), inputs):
                assert torch.equal(out, inp)
    # only the output cells start at zero; intermediate cells keep the usual init
    for block in supernet.blocks:
        gammas = [cell.conv_norm[1].weight for cell in block.cells]
        assert all(float(g.abs().max()) == 0.0 for g in gammas[2:])
        assert all(torch.equal(g, torch.ones_like(g)) for g in gammas[:2])


def test_level_residual_adds_the_block_input_of_each_output_cells_level():
    torch.manual_seed(6)
    pyramid = _pyramid(channels=4)
    plain = PyramidBlock("NAS-FPN", 4, torch.nn.BatchNorm2d).eval()
    _randomise_norms(plain)
    residual = PyramidBlock("NAS-FPN", 4, torch.nn.BatchNorm2d, level_residual=True).eval()
    residual.load_state_dict(plain.state_dict())
    with torch.no_grad():
        # recompute the published block by hand: each output cell's node gets its level's input added, and later
        # cells read the node with the residual in it
        pool = list(pyramid)
        sizes = {level: tuple(x.shape[-2:]) for level, x in zip(range(3, 8), pyramid)}
        for cell in plain.cells:
            node = cell(pool, sizes)
            if cell.plan.is_output:
                node = node + pyramid[cell.plan.level - 3]
            pool.append(node)
        expected = [pool[node] for node in PUBLISHED_OUTPUT_NODES]
        for got, want in zip(residual(pyramid), expected):
            assert torch.allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="output_norm_init other than 1 needs a norm"):
        PyramidBlock("NAS-FPN", 4, None, output_norm_init=0.0)


def test_one_shot_path_with_level_residual_equals_its_extracted_neck():
    torch.manual_seed(7)
    supernet = OneShotNASFPN([8, 16, 32], channels=4, num_repeats=2, level_residual=True, output_norm_init=0.0)
    _randomise_norms(supernet)  # trained-like weights: the cells contribute
    supernet.eval()
    features = [torch.randn(2, 8, 32, 32), torch.randn(2, 16, 16, 16), torch.randn(2, 32, 8, 8)]
    for arch in [NeckSearchSpace(7).sample(random.Random(seed)) for seed in range(3)]:
        supernet.set_arch(arch)
        standalone = supernet.extract()
        assert all(block.level_residual for block in standalone.blocks)
        with torch.no_grad():
            for a, b in zip(supernet(features), standalone(features)):
                assert torch.equal(a, b)
