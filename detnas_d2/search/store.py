"""The files that make a search resumable: ``search_state.json`` and ``search_log.jsonl`` of one output folder.

search_state.json   rewritten atomically after every fitness call; no timing inside, so an
                    interrupted-and-resumed search ends with the same bytes as an uninterrupted one
search_log.jsonl    one line per evaluated candidate (the only place holding timings); appended before
                    the state is saved, so it holds every candidate of the state: a resume whose state
                    file is missing or unreadable rebuilds it by replaying the strategy on the logged
                    results (nothing is evaluated again)
"""

import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from ..utils.io import atomic_write
from .state import CorruptStateError, load_state, save_json_atomic

logger = logging.getLogger("detnas_d2.search")

STATE_FILE = "search_state.json"
LOG_FILE = "search_log.jsonl"
BEST_FILE = "best_arch.json"

#: how to start over where a search is (shown in the errors)
NEW_SEARCH_HELP = "move the folder aside with search_net.py --overwrite, or choose another OUTPUT_DIR"
#: what to do with a folder that already holds a search
EXISTING_SEARCH_HELP = f"continue it with search_net.py --resume (run(resume=True)), {NEW_SEARCH_HELP}"


class SearchExistsError(FileExistsError):
    """A new search was asked for where a search already is (its files would be overwritten)."""


def existing_search_error(output_dir: str, found: Sequence[str], resume: bool) -> SearchExistsError:
    """The error of a new search (or a resume with nothing to resume from) where the files ``found`` are."""
    what = (
        f"but no {STATE_FILE} or {LOG_FILE} to resume from: {NEW_SEARCH_HELP}"
        if resume
        else f"which a new search would overwrite: {EXISTING_SEARCH_HELP}"
    )
    return SearchExistsError(f"{output_dir} already holds a search ({', '.join(found)}) {what}")


def check_same_settings(saved: Mapping[str, Any], current: Mapping[str, Any], path: str) -> None:
    """Raise a ValueError naming every setting (fingerprint entry) that differs between a saved state and this run."""
    differing = [key for key in sorted(set(saved) | set(current)) if saved.get(key) != current.get(key)]
    if differing:
        details = "; ".join(
            f"{key}: state has {saved.get(key, '<missing>')!r}, current run has {current.get(key, '<missing>')!r}"
            for key in differing
        )
        raise ValueError(
            f"cannot resume the search in {path}: its configuration differs ({details}). Resume with the "
            f"original settings, or {NEW_SEARCH_HELP}."
        )


class SearchStore:
    """Reads and writes the state and the log of the search in ``output_dir``; knows nothing of the search loop."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir

    def path(self, name: str) -> str:
        """Path of an output file."""
        return os.path.join(self.output_dir, name)

    def save_state(self, state: dict) -> None:
        """Atomically rewrite search_state.json."""
        save_json_atomic(self.path(STATE_FILE), state)

    def create(self, state: dict) -> None:
        """Begin a new search: the folder, an empty log and the initial state."""
        os.makedirs(self.output_dir, exist_ok=True)
        atomic_write(self.path(LOG_FILE), "")
        self.save_state(state)

    def check_new(self, resume: bool) -> None:
        """Fail if the folder holds a search's files (a resume gets here only when there is nothing to resume)."""
        found = [name for name in (STATE_FILE, LOG_FILE, BEST_FILE) if os.path.exists(self.path(name))]
        if found:
            raise existing_search_error(self.output_dir, found, resume)
        if resume:
            logger.info("No search state in %s; starting a new search", self.output_dir)

    def load_state(self) -> dict | None:
        """The saved state, or None if there is none, or it is unreadable but the log can rebuild it."""
        state_path = self.path(STATE_FILE)
        if not os.path.exists(state_path):
            return None
        try:
            return load_state(state_path)
        except CorruptStateError as err:
            if not os.path.exists(self.path(LOG_FILE)):
                raise CorruptStateError(
                    f"{err}; it cannot be rebuilt because {self.path(LOG_FILE)} is missing too. Start a new search: "
                    f"{NEW_SEARCH_HELP}"
                ) from None
            logger.warning("%s; rebuilding the search state from %s", err, self.path(LOG_FILE))
            return None

    def read_log(self) -> Tuple[List[Tuple[dict, str]], str]:
        """``([(entry, line), ...], whole text)``: the log's leading lines that parse with indices 0, 1, 2, ..."""
        with open(self.path(LOG_FILE), encoding="utf-8") as f:
            text = f.read()
        lines = []
        for line in text.split("\n"):
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                break
            if not isinstance(entry, dict) or entry.get("index") != len(lines) or "key" not in entry:
                break
            lines.append((entry, line))
        return lines, text

    def logged_results(self, write: bool) -> Tuple["OrderedDict[str, dict]", int] | None:
        """``(entries by key in log order, number of readable lines)`` of the log (None if there is none);
        ``write`` drops its unreadable end from the file."""
        path = self.path(LOG_FILE)
        if not os.path.exists(path):
            return None
        lines, text = self.read_log()
        readable = "".join(line + "\n" for _, line in lines)
        if write and readable != text:
            logger.info("Dropping the unreadable end of %s", path)
            atomic_write(path, readable)
        return OrderedDict((entry["key"], entry) for entry, _ in lines), len(lines)

    def reconcile_log(self, num_records: int, write: bool = True) -> None:
        """Make search_log.jsonl hold exactly the ``num_records`` candidates of the state (drop lines written
        after its last save)."""
        path = self.path(LOG_FILE)
        lines, text = self.read_log() if os.path.exists(path) else ([], "")
        if len(lines) < num_records:
            raise ValueError(
                f"{path} has {len(lines)} consistent lines but the search state records {num_records} "
                "evaluated candidates; the log was modified or lost. Restore it, or start a new search: "
                f"{NEW_SEARCH_HELP}"
            )
        expected = "".join(line + "\n" for _, line in lines[:num_records])
        if text != expected and write:
            logger.info("Dropping lines of %s written after the last saved state", path)
            atomic_write(path, expected)

    def append_log(self, entries: List[Dict]) -> None:
        """Append and fsync log lines; done BEFORE the state save so a crash can only leave extra lines."""
        with open(self.path(LOG_FILE), "a", encoding="utf-8") as f:
            for entry in entries:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
