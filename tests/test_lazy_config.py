"""LazyConfig: the backbone, neck and AutoAugment mapper built from plain arguments, the three configs of
configs/lazy/ (shapes FPN with a searched backbone, the zoo's LSJ Mask R-CNN with the backbone swapped, the shapes
supernet) trained or run by lazy_train_net.py, and a 'killed' supernet run resuming to the uninterrupted weights."""

import json
import os
import random

import numpy as np
import pytest
import torch
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig, get_cfg, instantiate
from detectron2.data import transforms as T
from detectron2.engine import HookBase
from detectron2.modeling import build_backbone
from detectron2.structures import BitMasks, Boxes, Instances
from detectron2.utils.events import EventStorage

import detnas_d2  # noqa: F401
from detnas_d2.cli import lazy_train
from detnas_d2.config import add_detnas_config
from detnas_d2.data.autoaugment import AutoAugment
from detnas_d2.data.mappers import AutoAugmentDatasetMapper
from detnas_d2.engine.lazy_trainer import LazyTrainer
from detnas_d2.engine.output_lock import OutputDirLock, OutputDirLockedError
from detnas_d2.engine.path_sampling import PathSamplingHook
from detnas_d2.modeling.detnas_backbone import DetNASBackbone, detnas_bottom_up
from detnas_d2.modeling.neck import BottomUpNeckBackbone, nasfpn_backbone
from presets import LAZY, LAZY_SHAPES_TINY, LAZY_SUPERNET_EVAL_TINY, SUPERNET_CONFIG

SHAPES_FPN = os.path.join(LAZY, "faster_rcnn_detnas_fpn_shapes.py")
SUPERNET = os.path.join(LAZY, "supernet_fpn_shapes.py")
ZOO_SWAP = os.path.join(LAZY, "mask_rcnn_detnas_fpn_100ep_LSJ.py")


def _shapes(tree):
    return {key: tuple(value.shape) for key, value in tree.state_dict().items()}


@pytest.mark.unit
def test_backbone_from_plain_arguments_matches_the_yacs_builder():
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SUPERNET_CONFIG)
    cfg.merge_from_list(["MODEL.DETNAS.ARCH", "COCO-FPN-300M", "MODEL.DETNAS.WIDTH_MULT", "0.25"])
    yacs = build_backbone(cfg).bottom_up
    plain = instantiate(
        L(detnas_bottom_up)(
            arch="COCO-FPN-300M", width_mult=0.25, norm="BN", weight_sharing="kernel", zero_init_last_norm=True
        )
    )
    assert isinstance(plain, DetNASBackbone) and plain.arch == yacs.arch
    assert _shapes(plain) == _shapes(yacs)
    with pytest.raises(ValueError, match=r"MODEL.DETNAS.WIDTH_MULT = -1.*positive"):
        detnas_bottom_up("COCO-FPN-300M", width_mult=-1)


@pytest.mark.unit
def test_one_shot_nasfpn_backbone_from_plain_arguments_takes_a_path():
    backbone = instantiate(
        L(nasfpn_backbone)(
            bottom_up=L(detnas_bottom_up)(width_mult=0.25, norm="BN", out_features=["res3", "res4", "res5"]),
            channels=16,
            num_repeats=1,
            one_shot=True,
        )
    )
    assert isinstance(backbone, BottomUpNeckBackbone) and backbone.neck.is_supernet
    backbone.set_arch({"backbone": [0] * 20})
    outputs = backbone(torch.rand(2, 3, 128, 128))  # 2 images: P7 is 1x1 and BN trains on it
    assert sorted(outputs) == ["p3", "p4", "p5", "p6", "p7"] and outputs["p3"].shape[1] == 16


@pytest.mark.unit
def test_autoaugment_mapper_from_plain_arguments():
    mapper = instantiate(
        L(AutoAugmentDatasetMapper)(
            is_train=True,
            autoaugment=L(AutoAugment)(policy="v0", image_format="BGR"),
            augmentations=[L(T.ResizeShortestEdge)(short_edge_length=64, max_size=64)],
            image_format="BGR",
        )
    )
    assert isinstance(mapper.autoaugment, AutoAugment) and mapper.autoaugment.policy


@pytest.mark.unit
def test_path_sampling_hook_from_plain_arguments_draws_as_from_yacs():
    cfg = add_detnas_config(get_cfg())
    cfg.merge_from_file(SUPERNET_CONFIG)
    cfg.merge_from_list(["MODEL.DETNAS.WIDTH_MULT", "0.25", "SUPERNET.SEED", "3"])
    model = instantiate(L(detnas_bottom_up)(width_mult=0.25, norm="BN"))
    from_yacs, plain = PathSamplingHook(cfg, model), PathSamplingHook(model, seed=3)
    assert [from_yacs.next_path() for _ in range(3)] == [plain.next_path() for _ in range(3)]
    with pytest.raises(ValueError, match=r"flops_bins keys \['bins'\] unknown; allowed"):
        PathSamplingHook(model, flops_bins={"bins": 3})


@pytest.mark.unit
def test_lazy_entry_refuses_a_yacs_config_naming_the_missing_keys():
    with pytest.raises(ValueError, match=r"lacks the LazyConfig keys .*'model'.*train_net.py"):
        lazy_train.cli(["--config-file", SUPERNET_CONFIG])


def test_zoo_lsj_mask_rcnn_with_detnas_backbone_runs_forward_and_backward():
    cfg = LazyConfig.load(ZOO_SWAP)
    cpu = ["train.device=cpu", "model.backbone.bottom_up.norm=BN", "model.backbone.norm=BN"]  # SyncBN needs GPUs
    fast = ["model.proposal_generator.post_nms_topk=[64,64]", "model.roi_heads.batch_size_per_image=16"]
    cfg = LazyConfig.apply_overrides(cfg, cpu + fast)
    cfg.train.init_checkpoint = ""  # from scratch: nothing is downloaded
    assert cfg.model.roi_heads.mask_head.conv_dims == [256] * 5  # the zoo model, only the bottom-up replaced
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    assert isinstance(model.backbone.bottom_up, DetNASBackbone)
    instances = Instances((96, 128))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 60.0, 70.0]]))
    instances.gt_classes = torch.tensor([3])
    mask = torch.zeros(1, 96, 128, dtype=torch.bool)
    mask[:, 20:70, 10:60] = True
    instances.gt_masks = BitMasks(mask)
    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    with EventStorage():
        losses = model([{"image": image, "instances": instances}])
    assert {"loss_mask", "loss_cls", "loss_rpn_cls"} <= set(losses)
    sum(losses.values()).backward()
    stem_grad = next(model.backbone.bottom_up.parameters()).grad
    assert stem_grad is not None and torch.isfinite(stem_grad).all()


def test_shapes_fpn_with_searched_backbone_trains_and_evaluates(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    results = lazy_train.cli(["--config-file", SHAPES_FPN, *LAZY_SHAPES_TINY, f"train.output_dir={out}"])
    assert set(results["bbox"]) >= {"AP", "AP50"}
    assert (out / "model_final.pth").is_file() and (out / "config.yaml").is_file()
    evaluated = lazy_train.cli(
        ["--config-file", SHAPES_FPN, *LAZY_SHAPES_TINY, f"train.output_dir={out}", "--eval-only", "--resume"]
    )
    assert evaluated["bbox"]["AP"] == pytest.approx(results["bbox"]["AP"])


class Killed(Exception):
    """Stops a run where a kill would."""


class KillBefore(HookBase):
    def __init__(self, iteration):
        self.iteration = iteration

    def before_step(self):
        if self.trainer.iter == self.iteration:
            raise Killed()


def _supernet_run(out, *extra):
    return lazy_train.cli(
        ["--config-file", SUPERNET, *LAZY_SHAPES_TINY, *LAZY_SUPERNET_EVAL_TINY, f"train.output_dir={out}", *extra]
    )


def test_supernet_trains_evaluates_and_a_killed_run_resumes_to_the_uninterrupted_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    full, cut = tmp_path / "full", tmp_path / "cut"
    results = _supernet_run(full)
    assert "bbox" in results and np.isfinite(results["bbox"]["AP"])

    build_hooks = LazyTrainer.build_hooks
    with monkeypatch.context() as patch:
        patch.setattr(LazyTrainer, "build_hooks", lambda self: build_hooks(self) + [KillBefore(3)])
        with pytest.raises(Killed):
            _supernet_run(cut)
    assert (cut / "model_0000001.pth").is_file() and not (cut / "model_final.pth").exists()
    random.seed(123), np.random.seed(123), torch.manual_seed(123)  # the resumed run must restore every RNG itself
    _supernet_run(cut, "--resume")

    expected = torch.load(full / "model_final.pth", map_location="cpu")["model"]
    got = torch.load(cut / "model_final.pth", map_location="cpu")["model"]
    assert sorted(got) == sorted(expected)
    assert [key for key in expected if not torch.equal(expected[key], got[key])] == []

    def paths(out):
        return [json.loads(line) for line in (out / "paths_rank0.jsonl").read_text().splitlines()]

    assert paths(cut) == paths(full) and [entry["iter"] for entry in paths(cut)] == [0, 1, 2, 3]
    assert len({json.dumps(entry["arch"]) for entry in paths(full)}) > 1  # a new path every iteration


@pytest.mark.unit
def test_lazy_run_refuses_an_output_folder_in_use(tmp_path):
    out = tmp_path / "out"
    with OutputDirLock(str(out)):
        with pytest.raises(OutputDirLockedError, match="is in use by another run"):
            _supernet_run(out)
