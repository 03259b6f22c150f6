#!/usr/bin/env python
"""Extract a fixed architecture's weights from a DetNAS supernet checkpoint.

Accepts a raw supernet state dict or a detectron2 checkpoint ({"model": ...}); writes a checkpoint
that a fixed-architecture backbone (MODEL.DETNAS.ARCH = the same architecture) loads directly.

Example:
    python tools/extract_subnet.py output/supernet/model_final.pth --arch COCO-FPN-300M \
        --output coco_fpn_300m_inherited.pth
"""

import argparse
import sys

import torch

from detnas_d2.modeling.weight_inheritance import extract_subnet_checkpoint
from detnas_d2.space.backbone import format_architecture, list_architectures, parse_architecture


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("supernet", help="supernet checkpoint (.pth): raw state dict or {'model': state_dict, ...}")
    parser.add_argument(
        "--arch",
        required=True,
        help=f"architecture: registered name ({', '.join(list_architectures())}), "
        "compact string '2120-2112-33130031-3132' or '2,1,2,0,...'",
    )
    parser.add_argument("--space", choices=["small", "large"], default=None, help="space of a list/string --arch")
    parser.add_argument("--output", "-o", required=True, help="where to write the subnet checkpoint (.pth)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Load, extract, save, and report the architecture written."""
    args = parse_args(argv)
    checkpoint = torch.load(args.supernet, map_location="cpu")
    subnet = extract_subnet_checkpoint(checkpoint, args.arch, space=args.space)
    torch.save(subnet, args.output)
    encoding = parse_architecture(args.arch, space=args.space).encoding
    print(f"wrote {args.output}: architecture {format_architecture(encoding)}")


if __name__ == "__main__":
    main(sys.argv[1:])
