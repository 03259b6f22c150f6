"""Command-line entry points (``python -m detnas_d2.cli.train`` / ``.search``); train_net.py and search_net.py
at the repository root call the same code."""
