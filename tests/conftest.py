"""Shared test settings: keep torch to one thread per process on the 2-core CI machine."""
import os
import sys

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def tiny_shapes_root(tmp_path):
    """A folder for small generated datasets that tests create themselves."""
    root = tmp_path / "data"
    root.mkdir()
    return str(root)


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The command-line entry points (train_net.py, search_net.py) live at the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
