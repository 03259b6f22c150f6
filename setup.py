"""Install detnas_d2 as a detectron2 plugin (`pip install -e .`).

detectron2 itself is not declared as a dependency: it is installed from source or from a redistribution
(e.g. sal-detectron2) under the import name `detectron2`, whose distribution name varies.
"""

from setuptools import find_packages, setup

setup(
    name="detnas_d2",
    version="0.1.0",
    description="Search detection systems (DetNAS backbones, NAS-FPN necks, bbox AutoAugment) on detectron2",
    packages=find_packages(include=["detnas_d2", "detnas_d2.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "torchvision", "fvcore", "pycocotools", "numpy", "opencv-python-headless", "matplotlib"],
    entry_points={
        "console_scripts": [
            "detnas-train = detnas_d2.cli.train:run",
            "detnas-search = detnas_d2.cli.search:run",
            "detnas-pipeline = detnas_d2.pipeline:main",
            "detnas-lazy-train = detnas_d2.cli.lazy_train:run",
            "detnas-export = detnas_d2.cli.export:run",
        ]
    },
)
