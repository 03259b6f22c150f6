"""The lock on OUTPUT_DIR (one run per folder, dead holders never block), options anywhere on the command line,
each command's own options and the console scripts of setup.py."""

import importlib
import os
import re
import runpy
import signal
import subprocess
import sys
import time

import pytest
import setuptools
from detectron2.engine import default_argument_parser

import search_net
import train_net
from detnas_d2.cli.defaults import parse_command_line
from detnas_d2.cli.search import build_parser as search_parser
from detnas_d2.cli.train import build_parser as train_parser
from detnas_d2.engine.output_lock import LOCK_FILE, OutputDirLock, OutputDirLockedError
from presets import REPO, SEARCH_CONFIG, STOCK_CONFIG, STOCK_TINY

HOLD_LOCK = (
    "import sys, time; from detnas_d2.engine.output_lock import OutputDirLock; "
    "OutputDirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(600)"
)


def _env(tmp_path):
    return {**os.environ, "DETNAS_DATA": str(tmp_path / "data"), "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1"}


@pytest.mark.unit
def test_lock_names_its_holder_and_is_released_on_exit(tmp_path):
    out = str(tmp_path / "out")
    with OutputDirLock(out):
        with pytest.raises(
            OutputDirLockedError,
            match=f"OUTPUT_DIR {out} is in use by another run: pid {os.getpid()} on host .*lock file {out}/{LOCK_FILE}",
        ):
            OutputDirLock(out).acquire()
    with OutputDirLock(out):
        pass


def test_lock_of_a_killed_process_does_not_block(tmp_path):
    out = str(tmp_path / "out")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, out], env=_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(OutputDirLockedError, match=f"pid {holder.pid} on host"):
        OutputDirLock(out).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with OutputDirLock(out):  # the lock file is still there, with the dead pid in it
        pass


def _train(out, *extra):
    return [
        sys.executable,
        os.path.join(REPO, "train_net.py"),
        "--config-file",
        STOCK_CONFIG,
        *STOCK_TINY,
        "OUTPUT_DIR",
        out,
        *extra,
    ]


def test_two_trainings_into_one_output_dir(tmp_path):
    """A 2-process (gloo) training holds the lock in its launching process; a second training is refused."""
    out = str(tmp_path / "out")
    first = subprocess.Popen(
        _train(
            out,
            "SOLVER.MAX_ITER",
            "100000",
            "SOLVER.IMS_PER_BATCH",
            "4",
            "SOLVER.CHECKPOINT_PERIOD",
            "2",
            "--num-gpus",
            "2",
            "--dist-url",
            "auto",
        ),
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 300
        while not os.path.isfile(os.path.join(out, "last_checkpoint")) and time.time() < deadline:
            time.sleep(0.2)
        assert first.poll() is None, "the 2-process training should be running (both ranks train under the lock)"
        second = subprocess.run(_train(out), env=_env(tmp_path), capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert f"OUTPUT_DIR {out} is in use by another run: pid {first.pid} on host" in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_eval_only_without_weights_is_refused(tmp_path, monkeypatch):
    """It would report the AP of a randomly initialised model."""
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="MODEL.WEIGHTS is empty: --eval-only would report the AP of a randomly"):
        train_net.cli(["--config-file", STOCK_CONFIG, "--eval-only", *STOCK_TINY, "OUTPUT_DIR", out])
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    "command, holds, files",
    [
        ("search", "a training", ["last_checkpoint", "metrics.json", "model_final.pth"]),
        ("train", "a search", ["search_state.json", "search_log.jsonl", "best_arch.json"]),
    ],
)
def test_a_run_into_another_kind_of_runs_folder_is_refused(tmp_path, monkeypatch, command, holds, files):
    """It would overwrite the other run's config.yaml; the error names what the folder holds."""
    monkeypatch.setenv("DETNAS_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    out.mkdir()
    for name in ["config.yaml", *files]:
        (out / name).write_text(name)
    before = {name: (out / name).read_text() for name in os.listdir(out)}
    run, config = (search_net.cli, SEARCH_CONFIG) if command == "search" else (train_net.cli, STOCK_CONFIG)
    with pytest.raises(ValueError, match=re.escape(f"OUTPUT_DIR {out} holds {holds} ({', '.join(files)})")):
        run(["--config-file", config, *STOCK_TINY, "OUTPUT_DIR", str(out)])
    assert {name: (out / name).read_text() for name in os.listdir(out)} == before


def _can_mount_tmpfs(tmp_path) -> bool:
    """Whether this machine lets an unprivileged user namespace mount a tmpfs (``unshare -rm``)."""
    target = tmp_path / "probe"
    target.mkdir()
    probe = ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m none {target}"]
    try:
        return subprocess.run(probe, capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def test_a_full_disk_stops_training_with_one_line_and_no_broken_checkpoint(tmp_path):
    """Training into a 3 MB tmpfs: the first checkpoint does not fit."""
    if not _can_mount_tmpfs(tmp_path):
        pytest.skip("no tmpfs mount here (unshare -rm); test_full_disk_write_keeps_the_old_checkpoint covers ENOSPC")
    disk = tmp_path / "disk"
    disk.mkdir()
    out = str(disk / "out")
    train = " ".join(f"'{word}'" for word in _train(out, "SOLVER.CHECKPOINT_PERIOD", "1"))
    script = f"mount -t tmpfs -o size=3m none {disk} && {train}; code=$?; echo FILES:; ls -a {out}; exit $code"
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=_env(tmp_path), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 1, done.stderr[-3000:]
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: no space left in {out} to write model_0000000.pth: it needs ")
    ), done.stderr[-3000:]
    assert "Logging error" not in done.stderr
    files = done.stdout.split("FILES:")[-1].split()
    assert not [name for name in files if name.endswith(".pth") or name.startswith(".tmp_")], files


@pytest.mark.unit
@pytest.mark.parametrize("build_parser", [train_parser, search_parser], ids=["train_net", "search_net"])
def test_options_may_follow_the_overrides(build_parser):
    args = parse_command_line(
        build_parser(),
        [
            "--config-file",
            "c.yaml",
            "SOLVER.MAX_ITER",
            "3",
            "--resume",
            "SOLVER.BASE_LR",
            "-0.5",
            "--register-coco",
            "mine",
            "m.json",
            "imgs",
            "--num-gpus=2",
            "--dist-url",
            "auto",
        ],
    )
    assert args.resume and args.num_gpus == 2 and args.dist_url == "auto"
    assert args.register_coco == [["mine", "m.json", "imgs"]]
    assert args.opts == ["SOLVER.MAX_ITER", "3", "SOLVER.BASE_LR", "-0.5"]


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv, message",
    [
        (["A.B", "1", "--no-such-option"], "unknown option --no-such-option among the KEY VALUE overrides"),
        (["A.B", "1", "C.D"], "the override 'C.D' has no value: overrides are KEY VALUE pairs"),
    ],
)
def test_misplaced_command_line_words_are_named(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_command_line(train_parser(), ["--config-file", "c.yaml", *argv])
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--eval-only"], ["SOLVER.MAX_ITER", "3", "--eval-only"]])
def test_search_rejects_eval_only(argv, capsys):
    with pytest.raises(SystemExit):
        parse_command_line(search_parser(), ["--config-file", "c.yaml", *argv])
    assert "--eval-only" in capsys.readouterr().err


def test_search_launch_options_keep_detectron2s_names_and_defaults():
    ours = vars(parse_command_line(search_parser(), []))
    detectron2s = vars(default_argument_parser().parse_args([]))
    launch_options = ("config_file", "resume", "num_gpus", "num_machines", "machine_rank", "dist_url")
    assert {k: ours[k] for k in launch_options} == {k: detectron2s[k] for k in launch_options}
    assert ours["opts"] == [] and ours["register_coco"] == ours["register_voc"] == []


def test_console_scripts_run_their_command_lines(monkeypatch, capsys):
    setup_kwargs = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: setup_kwargs.update(kwargs))
    runpy.run_path(os.path.join(REPO, "setup.py"))
    scripts = dict(line.replace(" ", "").split("=") for line in setup_kwargs["entry_points"]["console_scripts"])
    assert {"detnas-train", "detnas-search", "detnas-pipeline", "detnas-lazy-train", "detnas-export"} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(":")
        monkeypatch.setattr(sys, "argv", [name, "--help"])
        with pytest.raises(SystemExit) as exit_info:
            getattr(importlib.import_module(module), function)()
        assert exit_info.value.code == 0
        assert "--config-file" in capsys.readouterr().out
