"""Shared test settings: one torch thread per process on the 2-core CI machine, the repository root importable, the
two test tiers (unit / e2e), and the fixtures several test modules share."""

import os
import sys

import pytest
import torch

torch.set_num_threads(1)

# The command-line entry points (train_net.py, search_net.py) live at the repository root.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

import train_net  # noqa: E402  (both after the path set-up above)
from presets import SUPERNET_CONFIG, SUPERNET_TINY  # noqa: E402

TIERS = ("unit", "e2e")
#: modules whose tests run the command-line tools, train detectors or start processes: every test in them is e2e
#: unless marked ``@pytest.mark.unit``. A test in any other module is unit unless marked ``@pytest.mark.e2e``.
E2E_MODULES = {
    "test_autoaugment_train.py",
    "test_cli_safety.py",
    "test_export.py",
    "test_gpu_benchmark.py",
    "test_import_registration.py",
    "test_joint_search.py",
    "test_lazy_config.py",
    "test_nasfpn_search.py",
    "test_no_detectron2.py",
    "test_pipeline.py",
    "test_resume.py",
    "test_search_net.py",
    "test_search_safety.py",
    "test_setup.py",
    "test_supernet_learns.py",
    "test_supernet_training.py",
    "test_train_net.py",
}


def pytest_configure(config):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Give every test exactly one tier (before ``-m`` selects), from its own marker or else from its module."""
    for item in items:
        tiers = [tier for tier in TIERS if item.get_closest_marker(tier)]
        if len(tiers) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked with more than one tier: {tiers}")
        if not tiers:
            item.add_marker("e2e" if item.path.name in E2E_MODULES else "unit")


@pytest.fixture(scope="session")
def tiny_supernet(tmp_path_factory):
    """The SUPERNET_TINY shapes FPN supernet trained 60 iterations by train_net.py, once per session:
    (its data root, its checkpoint path). Tests that use it set DETNAS_DATA to that data root themselves."""
    root = tmp_path_factory.mktemp("supernet")
    out = str(root / "train")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DETNAS_DATA", str(root / "data"))
        train_net.cli(
            [
                "--config-file",
                SUPERNET_CONFIG,
                *SUPERNET_TINY,
                "SOLVER.MAX_ITER",
                "60",
                "SOLVER.IMS_PER_BATCH",
                "4",
                "SOLVER.WARMUP_ITERS",
                "10",
                "SOLVER.STEPS",
                "()",
                "TEST.EVAL_PERIOD",
                "0",
                "DATASETS.TEST",
                "()",
                "OUTPUT_DIR",
                out,
            ]
        )
    return str(root / "data"), os.path.join(out, "model_final.pth")
