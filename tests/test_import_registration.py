"""``import detnas_d2`` makes the detectron2 components available whichever of the two is imported first, and
importing a pure module (``detnas_d2.space.backbone``) does not import detectron2 (each case in a clean interpreter)."""

import os
import subprocess
import sys
import textwrap

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECK_REGISTERED = """
from detectron2.modeling import BACKBONE_REGISTRY, META_ARCH_REGISTRY
from detnas_d2.data.mappers import MAPPER_REGISTRY
from detnas_d2.modeling.neck import NECK_REGISTRY
assert {"build_detnas_fpn_backbone", "build_detnas_retinanet_backbone", "build_nasfpn_backbone"} <= set(
    name for name, _ in BACKBONE_REGISTRY)
assert "SupernetClassifier" in META_ARCH_REGISTRY and "NASFPN" in NECK_REGISTRY
assert {"AutoAugmentDatasetMapper", "ClassificationMapper"} <= set(name for name, _ in MAPPER_REGISTRY)
print("ok")
"""
CASES = {
    "detnas_d2 first": "import detnas_d2\nimport sys\nassert 'detectron2' not in sys.modules\n",
    "detectron2 first": "import detectron2.config\nimport detnas_d2\n",
    # detectron2 is first imported half-way through detnas_d2.data, whose import the registration needs too
    "config first": "from detnas_d2.config import add_detnas_config\n",
    "pure module first": "import importlib.util, sys\nimport detnas_d2.space.backbone\n"
    "importlib.util.find_spec('detectron2')  # a look at detectron2 does not import it\n"
    "assert 'detectron2' not in sys.modules\n",
}


def _run(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("case", sorted(CASES))
def test_components_are_registered_once_detectron2_is_imported(case):
    result = _run(CASES[case] + textwrap.dedent(CHECK_REGISTERED))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_importing_the_package_registers_no_dataset():
    """Datasets wait for ``register_from_config``: importing looks at no dataset folder."""
    script = (
        "import detnas_d2\nfrom detectron2.data import DatasetCatalog\n"
        "from detnas_d2.data.datasets import COCO_SEARCH_SPLITS, IMAGENET_SPLITS\n"
        "ours = {'shapes_train', 'shapes_cls_train', *COCO_SEARCH_SPLITS, *IMAGENET_SPLITS}\n"
        "assert not ours & set(DatasetCatalog.list())\n"
    )
    result = _run(script)
    assert result.returncode == 0, result.stderr
