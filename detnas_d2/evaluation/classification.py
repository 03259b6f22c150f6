"""Top-k accuracy of a classifier over a dataset, for ImageNet-style supernet pretraining.

Works with model outputs ``{"logits": (num_classes,) tensor}`` per image and inputs carrying an integer
``"label"``. An image counts as top-k correct when fewer than k classes score strictly higher than its true
class (ties favour the true class, so the result does not depend on how ``topk`` breaks ties).
"""

import itertools
import logging
from collections import OrderedDict
from typing import Dict, Sequence

import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm

__all__ = ["ClassificationEvaluator"]


class ClassificationEvaluator(DatasetEvaluator):
    """Top-1/top-5 accuracy in percent, gathered over all processes: ``{"classification": {"top1", "top5"}}``.

    ``k`` larger than the number of classes is capped at it (so top-5 of a 3-class problem is 100).

    Args:
        dataset_name: name of the evaluated dataset (used in log messages only).
        distributed: gather the predictions of all processes before computing the accuracy.
        topk: the k of each reported top-k accuracy.
    """

    def __init__(self, dataset_name: str | None = None, distributed: bool = True, topk: Sequence[int] = (1, 5)):
        if not topk or any(type(k) is not int or k < 1 for k in topk):
            raise ValueError(f"topk must be a non-empty sequence of positive ints, got {topk!r}")
        self.dataset_name = dataset_name
        self.distributed = distributed
        self.topk = tuple(topk)
        self._logger = logging.getLogger(__name__)
        self.reset()

    def reset(self) -> None:
        self._ranks = []  # per image: number of classes scoring strictly higher than the true one
        self._num_classes = None

    def process(self, inputs, outputs) -> None:
        for item, output in zip(inputs, outputs):
            logits = output["logits"].detach().flatten()
            num_classes = logits.numel()
            if self._num_classes is None:
                self._num_classes = num_classes
            elif num_classes != self._num_classes:
                raise ValueError(
                    f"logits have {num_classes} classes for image {item.get('image_id')}, "
                    f"{self._num_classes} for earlier images"
                )
            label = item.get("label")
            if type(label) is not int or not 0 <= label < num_classes:
                raise ValueError(
                    f"image {item.get('image_id')}: label must be an int in [0, {num_classes}), got {label!r}"
                )
            self._ranks.append(int(torch.count_nonzero(logits > logits[label])))

    def evaluate(self) -> Dict[str, Dict[str, float]]:
        ranks, num_classes = self._ranks, self._num_classes
        if self.distributed:
            comm.synchronize()
            gathered = comm.gather((ranks, num_classes), dst=0)
            if not comm.is_main_process():
                return {}
            ranks = list(itertools.chain.from_iterable(r for r, _ in gathered))
            num_classes = next((n for _, n in gathered if n is not None), None)
        if not ranks:
            self._logger.warning(f"[ClassificationEvaluator] no predictions for {self.dataset_name}; nothing to report")
            return {}
        ranks = torch.tensor(ranks)
        accuracy = OrderedDict(
            (f"top{k}", 100.0 * float((ranks < min(k, num_classes)).double().mean())) for k in self.topk
        )
        self._logger.info(
            f"[ClassificationEvaluator] {self.dataset_name}: {len(ranks)} images, "
            + ", ".join(f"{name} {value:.2f}%" for name, value in accuracy.items())
        )
        return OrderedDict(classification=accuracy)
