#!/usr/bin/env python
"""Train or evaluate a LazyConfig (.py) with the detnas_d2 plugin; see detnas_d2/cli/lazy_train.py."""

import detnas_d2  # noqa: F401  (registers the plugin's components)
from detnas_d2.cli.lazy_train import cli, main  # noqa: F401  (main: spawned processes of launch() import it here)

if __name__ == "__main__":
    cli()
