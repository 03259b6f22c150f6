"""The setup of a fresh checkout: ``tools/bootstrap_env.sh`` installs the package, so the console scripts exist and
every command of the README's *Measured* table runs as written (``--help``: they parse, import and find the package).

The checkout is a copy of this repository's files; its environment is a light venv seeing this environment's
packages (a ``.pth`` file), placed where the bootstrap looks for a finished install, so nothing is downloaded and the
environment shared by other checkouts is not touched.
"""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from concurrent.futures import ThreadPoolExecutor

import pytest

from presets import REPO

CONSOLE_SCRIPTS = ("detnas-train", "detnas-search", "detnas-pipeline")


def _checkout_files():
    """The repository's files a fresh clone has (tracked, plus new ones not ignored)."""
    listed = subprocess.run(
        ["git", "-C", REPO, "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if listed.returncode != 0:
        pytest.skip(f"{REPO} is not a git checkout")
    return [name for name in listed.stdout.splitlines() if os.path.isfile(os.path.join(REPO, name))]


def _light_environment(cache_root):
    """A venv at the place the bootstrap expects for this requirements.txt, marked finished, seeing our packages."""
    with open(os.path.join(REPO, "requirements.txt"), "rb") as f:
        env_dir = os.path.join(cache_root, "py310-" + hashlib.sha256(f.read()).hexdigest()[:16])
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", env_dir], check=True)
    (site,) = [p for p in os.listdir(os.path.join(env_dir, "lib")) if p.startswith("python")]
    with open(os.path.join(env_dir, "lib", site, "site-packages", "shared_env.pth"), "w") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    open(os.path.join(env_dir, ".detnas_install_complete"), "w").close()


def measured_commands():
    """The commands of the README's *Measured* table, each as it runs with ``--help`` (scripts, ``-m`` modules) or as
    written (``python -X/-c``); ``make`` targets (the suite and the demos themselves) are left out."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        section = f.read().split("\n## Measured\n", 1)[1].split("\n## ", 1)[0]
    commands = []
    for row in section.splitlines():
        if not row.startswith("|") or row.startswith(("| what", "|---")):
            continue
        for span in re.findall(r"`([^`]+)`", row.rstrip(" |").rsplit("|", 1)[-1]):
            words = shlex.split(span)
            if words[0] == "make" or words[0].endswith(".md"):
                continue
            if words[0] == "python" and words[1] in ("-X", "-c"):
                commands.append(words)
            elif words[0] == "python" and words[1] == "-m":
                commands.append(["python", "-m", words[2], "--help"])
            elif words[0] == "python" or words[0].endswith(".py"):
                script = words[1] if words[0] == "python" else words[0]
                commands.append(["python", script, "--help"])
            else:  # a function, e.g. detnas_d2.cost.backbone_flops
                module, name = words[0].rsplit(".", 1)
                commands.append(["python", "-c", f"import {module}; {module}.{name}"])
    return commands


def test_bootstrap_of_a_fresh_checkout_installs_what_the_readme_uses(tmp_path):
    clone, cache = tmp_path / "clone", tmp_path / "cache"
    for name in _checkout_files():
        os.makedirs(clone / os.path.dirname(name), exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), clone / name)
    _light_environment(str(cache))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(DETNAS_ENV_CACHE=str(cache), DETNAS_DATA=str(tmp_path / "data"), OMP_NUM_THREADS="1")
    boot = subprocess.run(["bash", "tools/bootstrap_env.sh"], cwd=clone, env=env, capture_output=True, text=True)
    assert boot.returncode == 0, boot.stdout + boot.stderr
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for script in CONSOLE_SCRIPTS:
        done = subprocess.run([script, "--help"], cwd=elsewhere, env=env, capture_output=True, text=True)
        assert done.returncode == 0 and "usage:" in done.stdout, (script, done.stderr[-2000:])
    commands = measured_commands()
    assert ["python", "benchmarks/bench_flops.py", "--help"] in commands
    with ThreadPoolExecutor(max_workers=2) as pool:  # each one mostly imports torch: two cores, two at a time
        runs = pool.map(
            lambda command: subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True), commands
        )
        for command, done in zip(commands, runs):
            assert done.returncode == 0, (shlex.join(command), done.stderr[-2000:])
