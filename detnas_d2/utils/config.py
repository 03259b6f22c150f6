"""The one idiom every ``add_*_config`` function declares its keys with."""


def declare(node, key: str, value) -> None:
    """Set ``node.key = value`` unless the key exists already, so ``add_*_config`` functions stay idempotent."""
    if key not in node:
        node[key] = value
