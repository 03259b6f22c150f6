"""A training loader that ``--resume`` continues exactly, whatever ``DATALOADER.NUM_WORKERS`` is.

Every sample has a position in this rank's infinite index stream (the sampler's order). Its augmentation runs
with the python, numpy and torch RNGs seeded from ``(seed, rank, position)``, so it is the same in whichever
process maps it and whether or not the run was resumed. Loader workers map whole chunks of positions (chunk
``i`` by worker ``i % num_workers``), which the DataLoader returns in position order; aspect-ratio grouping
then runs in the main process, so batches do not depend on the number of workers either.

:meth:`ResumableTrainLoader.state_dict` holds the next stream position and the samples waiting in the
aspect-ratio groups; the trainer saves it in checkpoints, and a resumed loader re-maps the waiting samples
(same seeds, same result) before it continues the stream.
"""

import contextlib
import itertools
import logging
import random
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import torch
from detectron2.data.build import worker_init_reset_seed
from detectron2.data.common import DatasetFromList
from detectron2.data.samplers import TrainingSampler
from detectron2.utils import comm
from detectron2.utils.serialize import PicklableWrapper
from torch.utils.data import DataLoader, IterableDataset, Sampler, get_worker_info

logger = logging.getLogger(__name__)

#: images a skipping mapper may reject in a row for one stream position before training stops
MAX_ATTEMPTS = 100


def sample_seed(seed: int, rank: int, position: int, attempt: int = 0) -> int:
    """The 32-bit seed of one sample's augmentation (``attempt`` > 0: after the mapper skipped an image)."""
    return int(np.random.SeedSequence([seed, rank, position, attempt]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_rngs(seed: int):
    """Run the block with python, numpy and torch (CPU) RNGs seeded with ``seed``; restore their states after."""
    saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
        torch.set_rng_state(saved[2])


class SeededSampleMapper:
    """``(position, dataset index) -> model input``, mapped under the position's seeds.

    A sample the mapper skips (returns None, e.g. an unreadable image with ``DATALOADER.ON_BAD_IMAGE skip``) is
    replaced by an index drawn from the same seeds, as detectron2's ``MapDataset`` does, but reproducibly.
    """

    def __init__(self, dataset: Sequence[Dict], mapper: Callable, seed: int, rank: int):
        self.dataset = DatasetFromList(list(dataset), copy=False)
        self.mapper = PicklableWrapper(mapper)
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, position: int, index: int) -> Dict:
        for attempt in range(MAX_ATTEMPTS):
            seed = sample_seed(self.seed, self.rank, position, attempt)
            with seeded_rngs(seed):
                sample = self.mapper(self.dataset[index])
            if sample is not None:
                return sample
            index = random.Random(seed).randrange(len(self.dataset))
        raise RuntimeError(
            f"the training mapper skipped {MAX_ATTEMPTS} images in a row at stream position "
            f"{position}; check the training images (DATALOADER.ON_BAD_IMAGE)"
        )


def _worker_shard() -> Tuple[int, int]:
    """``(worker id, number of workers)`` of the calling loader worker; ``(0, 1)`` in the main process."""
    info = get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


class PositionChunks(IterableDataset):
    """``(position, index, sample)`` for this rank's stream from position ``start``; a loader worker yields
    only its chunks of ``chunk_size`` positions (chunk ``i`` goes to worker ``i % num_workers``)."""

    def __init__(self, sampler: Sampler, map_sample: SeededSampleMapper, chunk_size: int):
        self.sampler, self.map_sample, self.chunk_size = sampler, map_sample, int(chunk_size)
        self.start = 0

    def __iter__(self) -> Iterator[Tuple[int, int, Dict]]:
        worker, num_workers = _worker_shard()
        indices = itertools.islice(iter(self.sampler), self.start, None)
        for position, index in enumerate(indices, self.start):
            if (position - self.start) // self.chunk_size % num_workers == worker:
                yield position, int(index), self.map_sample(position, int(index))


class ResumableTrainLoader:
    """Training batches of ``batch_size`` samples in stream order, grouped by aspect ratio (w > h or not) as
    detectron2's ``AspectRatioGroupedDataset`` does; the state of the stream is checkpointable."""

    def __init__(
        self,
        chunks: PositionChunks,
        batch_size: int,
        *,
        num_workers: int = 0,
        aspect_ratio_grouping: bool = True,
        loader_seed: int = 0,
    ):
        self.chunks, self.batch_size = chunks, int(batch_size)
        self.num_workers, self.aspect_ratio_grouping = int(num_workers), bool(aspect_ratio_grouping)
        self.loader_seed = int(loader_seed)
        self.next_position = 0
        self.waiting: List[List[Tuple[int, int]]] = [[], []]  # (position, index) per aspect group

    def state_dict(self) -> Dict:
        """The next stream position and the ``(position, index)`` samples waiting in each aspect group."""
        return {"next_position": self.next_position, "waiting": [list(map(list, g)) for g in self.waiting]}

    def load_state_dict(self, state: Dict) -> None:
        """Continue from a :meth:`state_dict` (call before iterating)."""
        self.next_position = int(state["next_position"])
        self.waiting = [[(int(p), int(i)) for p, i in group] for group in state["waiting"]]

    def skip_batches(self, num_batches: int) -> None:
        """Start after ``num_batches`` whole batches (for checkpoints without a loader state)."""
        self.next_position, self.waiting = int(num_batches) * self.batch_size, [[], []]

    def _group(self, sample: Dict) -> int:
        if not self.aspect_ratio_grouping:
            return 0
        return 0 if sample["width"] > sample["height"] else 1

    def _stream(self) -> Iterator[Tuple[int, int, Dict]]:
        """The mapped samples from ``next_position`` on, checked to arrive in stream order."""
        self.chunks.start = self.next_position
        generator = torch.Generator()
        generator.manual_seed(self.loader_seed)  # worker seeds; never draws from the global RNG
        loader = DataLoader(
            self.chunks,
            batch_size=self.chunks.chunk_size,
            num_workers=self.num_workers,
            collate_fn=list,
            worker_init_fn=worker_init_reset_seed,
            generator=generator,
        )
        for position, index, sample in itertools.chain.from_iterable(loader):
            if position != self.next_position:
                raise RuntimeError(
                    f"training loader out of order: got stream position {position}, expected {self.next_position}"
                )
            self.next_position = position + 1
            yield position, index, sample

    def _restored_groups(self) -> List[List[Tuple[int, int, Dict]]]:
        """The waiting samples of a loaded state, mapped again (same seeds), in their groups."""
        groups = [[], []]
        for position, index in sorted(itertools.chain.from_iterable(self.waiting)):
            sample = self.chunks.map_sample(position, index)
            groups[self._group(sample)].append((position, index, sample))
        return groups

    def __iter__(self) -> Iterator[List[Dict]]:
        groups = self._restored_groups()
        for item in self._stream():
            group = groups[self._group(item[2])]
            group.append(item)
            if len(group) == self.batch_size:
                batch = [sample for _, _, sample in group]
                group.clear()
                self.waiting = [[(p, i) for p, i, _ in g] for g in groups]
                yield batch


def build_resumable_train_loader(
    dataset: Sequence[Dict],
    *,
    mapper: Callable,
    total_batch_size: int,
    seed: int,
    sampler: Sampler | None = None,
    num_workers: int = 0,
    aspect_ratio_grouping: bool = True,
) -> ResumableTrainLoader:
    """This rank's :class:`ResumableTrainLoader` over ``dataset`` (``total_batch_size`` images per step over all
    ranks; default sampler: detectron2's ``TrainingSampler`` seeded with ``seed``); the arguments of detectron2's
    ``build_detection_train_loader``, so a LazyConfig's ``dataloader.train`` can name either."""
    world = comm.get_world_size()
    if total_batch_size < 1 or total_batch_size % world:
        raise ValueError(
            f"total_batch_size (SOLVER.IMS_PER_BATCH) = {total_batch_size}: the images per step must be a "
            f"positive multiple of the number of processes ({world})"
        )
    batch_size = total_batch_size // world
    sampler = TrainingSampler(len(dataset), seed=seed) if sampler is None else sampler
    map_sample = SeededSampleMapper(dataset, mapper, seed, comm.get_rank())
    return ResumableTrainLoader(
        PositionChunks(sampler, map_sample, batch_size),
        batch_size,
        num_workers=num_workers,
        aspect_ratio_grouping=aspect_ratio_grouping,
        loader_seed=seed,
    )
