"""Crash-safe persistence for the search: atomic JSON files and JSON-serialisable RNG state.

The search writes its state after every evaluated candidate, so a write must never leave a
half-written file behind: every file goes through :func:`detnas_d2.utils.io.atomic_write`.
"""

import json
import random
from typing import Any

from ..utils.io import atomic_write

#: identifies the layout of ``search_state.json``; bump when it changes incompatibly
STATE_FORMAT = "detnas_d2.search_state/1"


def dump_json(obj: Any, pretty: bool = False) -> str:
    """Canonical JSON text (sorted keys) so equal states give equal bytes.

    ``pretty`` indents for human readers; the default compact form uses the fast C encoder, which
    matters because the search state is rewritten after every evaluated candidate.
    """
    if pretty:
        return json.dumps(obj, sort_keys=True, indent=1) + "\n"
    return json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n"


def save_json_atomic(path: str, obj: Any, pretty: bool = False) -> None:
    """Atomically write ``obj`` as canonical JSON to ``path``."""
    atomic_write(path, dump_json(obj, pretty=pretty))


class CorruptStateError(ValueError):
    """A search state file that is empty, truncated or otherwise not JSON."""


def load_state(path: str) -> dict:
    """Read a search state file and check that its format is the one this code writes."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.strip():
        raise CorruptStateError(f"{path} is empty")
    try:
        state = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CorruptStateError(f"{path} is not valid JSON (truncated?): {err}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(
            f"{path} is not a search state of format {STATE_FORMAT!r} (found {found!r}); "
            "start a new search in another OUTPUT_DIR, or move this one aside (search_net.py --overwrite)"
        )
    return state


def rng_state_to_json(rng: random.Random) -> list:
    """The full state of ``rng`` as a JSON-serialisable list ``[version, [625 ints], gauss_next]``."""
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_state_from_json(rng: random.Random, data: list) -> None:
    """Restore ``rng`` to a state produced by :func:`rng_state_to_json`."""
    if not isinstance(data, list) or len(data) != 3 or not isinstance(data[1], list):
        raise ValueError(
            f"invalid random.Random state in search state: expected [version, [ints], gauss_next], got {data!r:.80}"
        )
    version, internal, gauss_next = data
    rng.setstate((version, tuple(internal), gauss_next))
