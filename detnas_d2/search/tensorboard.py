"""Search progress as detectron2 events: TensorBoard scalars and JSON lines next to the training metrics.

``tensorboard --logdir OUTPUT_DIR`` then shows the search (one step per generation) beside any training run
written under the same folder.
"""
import os
from typing import Dict

from detectron2.utils.events import EventStorage, JSONWriter, TensorboardXWriter

SCALARS = ("best", "median", "worst", "best_so_far", "best_so_far_flops", "n_evaluated")


class SearchEventWriter:
    """``on_generation_end`` callback writing per-generation search statistics under ``search/``."""

    def __init__(self, output_dir: str):
        os.makedirs(output_dir, exist_ok=True)
        self.writers = [JSONWriter(os.path.join(output_dir, "search_metrics.json")),
                        TensorboardXWriter(output_dir)]

    def __call__(self, generation: int, stats: Dict) -> None:
        with EventStorage(start_iter=generation) as storage:
            for name in SCALARS:
                if stats.get(name) is not None:
                    storage.put_scalar(f"search/{name}", float(stats[name]), smoothing_hint=False)
            for writer in self.writers:
                writer.write()

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
