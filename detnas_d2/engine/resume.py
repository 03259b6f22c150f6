"""Exact resumption: RNG states in checkpoints.

detectron2's ``--resume`` restores weights, optimizer, scheduler and iteration, but restarts the data stream
and leaves global random states as seeded at start-up, so a resumed run sees other images and other random
draws than an uninterrupted one. :class:`RNGStateHook` restores the global states; the data stream (images
and their augmentation) continues through ``detnas_d2.data.resumable_loader``, whose state the trainer saves.
"""

import random

import numpy as np
import torch
from detectron2.engine import HookBase
from detectron2.utils import comm


class RNGStateHook(HookBase):
    """Saves python, numpy and torch RNG states in every checkpoint and restores them on resume.

    Checkpoints are written by rank 0, so they hold rank 0's states: a single-process run resumes exactly;
    other ranks re-derive distinct, deterministic states from them (their own pre-kill states are not saved).
    """

    def state_dict(self):
        return {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "torch": torch.get_rng_state(),
        }

    def load_state_dict(self, state_dict):
        random.setstate(state_dict["python"])
        np.random.set_state(state_dict["numpy"])
        torch.set_rng_state(state_dict["torch"])
        rank = comm.get_rank()
        if rank:
            offset = int(torch.randint(0, 2**31 - 1, (1,)).item()) + rank
            random.seed(offset)
            np.random.seed(offset % 2**32)
            torch.manual_seed(offset)
