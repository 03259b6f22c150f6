"""Command-line studies built on the package (ranking check, searched-vs-random comparison)."""
