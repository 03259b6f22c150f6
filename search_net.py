#!/usr/bin/env python
"""Architecture search with the detnas_d2 plugin; see detnas_d2/cli/search.py (``python search_net.py -h``)."""

import detnas_d2  # noqa: F401  (registers the plugin's components)
from detnas_d2.cli.search import cli, main  # noqa: F401

if __name__ == "__main__":
    cli()
