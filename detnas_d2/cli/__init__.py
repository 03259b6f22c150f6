"""Command-line entry points (``python -m detnas_d2.cli.train`` / ``.search``, the console scripts ``detnas-train``
/ ``detnas-search`` of setup.py); train_net.py and search_net.py at the repository root call the same code."""
