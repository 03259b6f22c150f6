#!/usr/bin/env python
"""Evolutionary architecture search on a trained supernet (DetNAS step 3).

Not implemented yet: the search engine lands with the evolutionary-search issue. This entry point already
accepts detectron2's standard arguments so scripts can be written against it.
"""
import sys

from detectron2.engine import default_argument_parser


def cli(argv=None):
    args = default_argument_parser().parse_args(argv)
    print(
        "search_net.py: the evolutionary search is not implemented yet. Once it lands, this command will\n"
        f"  load the supernet named by MODEL.WEIGHTS in {args.config_file or '<config>'},\n"
        "  recalibrate BN statistics for every candidate path on the training split,\n"
        "  score each candidate's bbox AP on the held-out search split with detectron2's COCOEvaluator,\n"
        "  evolve the population under SEARCH.FLOPS_LIMIT and write search_log.jsonl and best_arch.json."
    )
    return 2


if __name__ == "__main__":
    sys.exit(cli())
