"""``detnas_d2.nn`` and ``detnas_d2.space`` work in an interpreter where detectron2 cannot be imported."""

import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, random, sys

    class BlockDetectron2:
        '''Meta-path finder that makes every detectron2 import fail, as on a machine without it.'''
        def find_spec(self, name, path=None, target=None):
            if name == "detectron2" or name.startswith("detectron2."):
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockDetectron2())
    import torch
    import detnas_d2
    assert not detnas_d2.HAS_DETECTRON2
    for package in ("detnas_d2.nn", "detnas_d2.space"):
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            importlib.import_module(info.name)
    from detnas_d2.nn.shufflenet import build_shufflenet
    from detnas_d2.space.backbone import BackboneSearchSpace
    torch.manual_seed(0)
    supernet = build_shufflenet(None, space="small", width_mult=0.25).eval()
    arch = BackboneSearchSpace("small").sample(random.Random(0))
    with torch.no_grad():
        features = supernet(torch.randn(1, 3, 64, 64), arch)
    assert features["res5"].shape[-1] == 2, {k: tuple(v.shape) for k, v in features.items()}
    assert not any(name.split(".")[0] == "detectron2" for name in sys.modules)
    print("ok")
""")


def test_nn_and_space_import_and_run_without_detectron2():
    env = {**os.environ, "PYTHONPATH": REPO_ROOT, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
