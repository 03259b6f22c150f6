"""The whole DetNAS workflow as one resumable command.

    python -m detnas_d2.pipeline --config-file configs/shapes/pipeline.yaml [--num-gpus N] [--output-dir DIR]

Stages: supernet classification pretraining -> detection fine-tuning -> search (+ export) -> retraining of the
searched architecture (starting from its weights inherited from the fine-tuned supernet, as the search exported
them) -> final evaluation, and optionally ``reference``: a stock detectron2 model trained and evaluated with its own
config, so the report puts the searched detector beside it. Each stage is a ``train_net`` / ``search_net`` run in
its own process (so every stage gets detectron2's usual logging, ``launch`` and ``--resume``), reading the previous
stage's checkpoint or searched architecture. A stage is done, and skipped, when every output it promises exists and
is readable (:meth:`Pipeline.stage_done`); any other stage that ran before resumes from its last checkpoint (training)
or its state file (search). The pipeline holds the lock of its output folder; ending it in any way (``kill -9``
included) ends its running stage. ``report.md`` summarises each stage, with the wall time of every run of it.

The pipeline file is YAML:

    output_dir: output/pipeline          # stage folders go under it
    stages:                              # run in this order; omit a stage to skip it
      pretrain: {config: supernet_cls.yaml, opts: [SOLVER.MAX_ITER, 300]}
      finetune: {config: supernet_fpn.yaml}
      search:   {config: search_fpn.yaml}
      retrain:  {config: supernet_fpn.yaml}
      evaluate: {}
      reference: {config: faster_rcnn_R18_FPN.yaml, opts: [SOLVER.MAX_ITER, 300]}

Config paths are relative to the pipeline file. ``opts`` are extra ``KEY VALUE`` overrides for that stage.
"""

import argparse
import ctypes
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from typing import Dict, List

import torch
import yaml

from .engine.learning_alarm import ALARM_FILE
from .engine.output_lock import OutputDirLock, OutputDirLockedError
from .parts import get_part
from .search.export import CONFIG_FILE
from .search.store import BEST_FILE
from .utils.io import atomic_write

STAGES = ("pretrain", "finetune", "search", "retrain", "evaluate", "reference")
FINAL_METRICS = "final_metrics.json"
#: per stage folder: the wall minutes of every run of the stage (interrupted ones included), rewritten while it runs
STAGE_TIME = "pipeline_stage_time.json"
#: seconds between two updates of a running stage's time (what a ``kill -9`` of the pipeline can lose)
TIME_UPDATE_S = 1.0
#: Linux prctl option: a signal for the child when its parent dies
_PR_SET_PDEATHSIG = 1


class PipelineError(RuntimeError):
    """A stage failed or the pipeline file is invalid."""


def load_pipeline(path: str) -> Dict:
    """Read and validate a pipeline file; config paths become absolute."""
    with open(path) as f:
        spec = yaml.safe_load(f) or {}
    stages = spec.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise PipelineError(f"{path}: 'stages' must be a mapping with some of {STAGES}")
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise PipelineError(f"{path}: unknown stage(s) {unknown}; allowed: {list(STAGES)}")
    base = os.path.dirname(os.path.abspath(path))
    for name, stage in stages.items():
        stage = stages[name] = dict(stage or {})
        if name != "evaluate":
            if "config" not in stage:
                raise PipelineError(f"{path}: stage '{name}' needs a 'config' file")
            stage["config"] = os.path.join(base, stage["config"])
            if not os.path.isfile(stage["config"]):
                raise PipelineError(f"{path}: stage '{name}' config {stage['config']} does not exist")
        stage["opts"] = [str(x) for x in stage.get("opts", [])]
    spec.setdefault("output_dir", "output/pipeline")
    return spec


class Pipeline:
    """Runs the stages of a pipeline file, skipping finished ones and recording their numbers."""

    def __init__(self, spec: Dict, output_dir: str, launch_args: List[str]):
        self.stages = spec["stages"]
        self.output_dir = os.path.abspath(output_dir)
        self.launch_args = launch_args
        self.summary: Dict[str, Dict] = {}

    def stage_dir(self, name: str) -> str:
        return os.path.join(self.output_dir, name)

    def _run(self, name: str, module: str, config: str, opts: List[str], extra: List[str] = ()) -> None:
        out = self.stage_dir(name)
        cmd = [
            sys.executable,
            "-m",
            module,
            "--config-file",
            config,
            *self.launch_args,
            *extra,
            *opts,
            "OUTPUT_DIR",
            out,
        ]
        resuming = os.path.isdir(out)
        if resuming and "--eval-only" not in extra:
            cmd.insert(cmd.index("--config-file"), "--resume")
        print(f"[pipeline] {name}: {'resuming' if resuming else 'starting'}\n  {shlex.join(cmd)}", flush=True)
        runs, start = self._stage_runs(name), time.time()
        proc = subprocess.Popen(cmd, preexec_fn=_end_with_parent)
        try:
            while True:
                try:
                    code = proc.wait(timeout=TIME_UPDATE_S)
                    break
                except subprocess.TimeoutExpired:
                    self._save_stage_runs(name, runs + [(time.time() - start) / 60])
        finally:
            if proc.poll() is None:  # the pipeline was interrupted (Ctrl-C, SIGTERM): its stage ends with it
                proc.terminate()
                proc.wait()
            self._save_stage_runs(name, runs + [(time.time() - start) / 60])
        minutes = self._stage_minutes(name)
        print(f"[pipeline] {name}: {'finished' if code == 0 else 'failed'} after {minutes:.2f} min", flush=True)
        if code != 0:
            raise PipelineError(f"stage '{name}' failed (exit code {code}); rerun the pipeline to resume it")

    def _stage_runs(self, name: str) -> List[float]:
        """Wall minutes of each earlier run of stage ``name`` (a file of an older version holds their sum)."""
        path = os.path.join(self.stage_dir(name), STAGE_TIME)
        if not os.path.isfile(path):
            return []
        with open(path) as f:
            saved = json.load(f)
        return [float(m) for m in saved["runs"]] if "runs" in saved else [float(saved["minutes"])]

    def _save_stage_runs(self, name: str, runs: List[float]) -> None:
        if os.path.isdir(self.stage_dir(name)):
            atomic_write(os.path.join(self.stage_dir(name), STAGE_TIME), json.dumps({"runs": runs}))

    def _stage_minutes(self, name: str) -> float:
        """Wall minutes spent in stage ``name`` over all runs of the pipeline, interrupted ones included."""
        return sum(self._stage_runs(name))

    def _weights(self, name: str) -> str:
        return os.path.join(self.stage_dir(name), "model_final.pth")

    def stage_done(self, name: str) -> bool:
        """Whether every output stage ``name`` promises exists and is readable: ``model_final.pth`` of a training;
        ``best_arch.json``, ``best_config.yaml`` and the weights that config starts from when the search exported
        them into its folder; ``final_metrics.json`` of the evaluation."""
        if name == "search":
            exported = self._exported()
            return exported is not None and (exported["weights"] is None or _readable_checkpoint(exported["weights"]))
        if name == "evaluate":
            return _read_json(os.path.join(self.stage_dir(name), FINAL_METRICS)) is not None
        return _readable_checkpoint(self._weights(name))

    def _exported(self) -> Dict | None:
        """The search's export: ``{"best": best_arch.json, "weights": the exported weights (None where the search
        exported none, a proxy search)}``; None while best_arch.json or best_config.yaml is missing or unreadable."""
        out = self.stage_dir("search")
        best, config = _read_json(os.path.join(out, BEST_FILE)), _read_yaml(os.path.join(out, CONFIG_FILE))
        if best is None or not isinstance(config, dict):
            return None
        weights = os.path.abspath(str(config.get("MODEL", {}).get("WEIGHTS", "")))
        inside = os.path.commonpath([weights, os.path.abspath(out)]) == os.path.abspath(out)
        return {"best": best, "weights": weights if inside else None}

    def _skip_done(self, name: str, output: str) -> bool:
        """True (saying so) when stage ``name`` is done."""
        if not self.stage_done(name):
            return False
        print(f"[pipeline] {name}: done already ({output})")
        return True

    def _check_done(self, name: str, why: str = "") -> None:
        """Fail when stage ``name`` ended without every output it promises."""
        if not self.stage_done(name):
            raise PipelineError(f"stage '{name}' ended without all its outputs in {self.stage_dir(name)}{why}")

    def _train(self, name: str, init_weights: str = None, extra_opts: List[str] = ()) -> None:
        if self._skip_done(name, self._weights(name)):
            return
        stage = self.stages[name]
        opts = list(stage["opts"]) + list(extra_opts)
        if init_weights:
            opts += ["MODEL.WEIGHTS", init_weights]
        self._run(name, "detnas_d2.cli.train", stage["config"], opts)
        self._check_done(
            name,
            f": no readable {self._weights(name)}; its last checkpoint is already past SOLVER.MAX_ITER (was MAX_ITER "
            "lowered after an interruption?)",
        )

    def run(self) -> None:
        """Run every stage not done yet, holding the lock of the output folder, then write ``report.md``."""
        try:
            with OutputDirLock(self.output_dir):
                self._run_stages()
        except OutputDirLockedError as err:
            raise PipelineError(str(err)) from None

    def _run_stages(self) -> None:
        previous = None
        if "pretrain" in self.stages:
            self._train("pretrain")
            previous = self._weights("pretrain")
        if "finetune" in self.stages:
            self._train("finetune", previous)
            previous = self._weights("finetune")
        best = None
        if "search" in self.stages:
            best = self._search(previous)
        if "retrain" in self.stages:
            if best is None:
                raise PipelineError("stage 'retrain' needs the 'search' stage (it retrains the searched architecture)")
            self._train("retrain", self._retrain_init(), self._arch_opts(best))
        if "evaluate" in self.stages:
            self._evaluate()
        if "reference" in self.stages:
            self._reference()
        self.write_report()

    def _retrain_init(self):
        """The weights the search exported (the searched detector's weights inherited from the fine-tuned supernet,
        BN recalibrated); the pretrained supernet where the search exported none (a proxy-task search)."""
        exported = self._exported()["weights"]
        if exported is not None:
            return exported
        return self._weights("pretrain") if "pretrain" in self.stages else None

    def _search(self, supernet: str) -> Dict:
        if not self._skip_done("search", self.stage_dir("search")):
            stage = self.stages["search"]
            opts = list(stage["opts"]) + (["MODEL.WEIGHTS", supernet] if supernet else [])
            self._run("search", "detnas_d2.cli.search", stage["config"], opts)
            self._check_done("search", f": {BEST_FILE}, {CONFIG_FILE} and the weights it names")
        best = self._exported()["best"]
        self.summary.setdefault("search", {}).update(
            best_fitness=best["fitness"], best_arch=best["arch"], best_costs=best.get("costs", {})
        )
        return best

    @staticmethod
    def _arch_opts(best: Dict) -> List[str]:
        """Command-line options fixing the searched parts (a bare architecture is the backbone's)."""
        arch = best["arch"]
        parts = arch if isinstance(arch, dict) else {"backbone": arch}
        return [
            str(item)
            for name, part_arch in parts.items()
            for key, value in get_part(name).config_values(part_arch).items()
            for item in (key, value)
        ]

    def _evaluate(self) -> None:
        metrics_file = os.path.join(self.stage_dir("evaluate"), FINAL_METRICS)
        if not self._skip_done("evaluate", metrics_file):
            trained = "retrain" if "retrain" in self.stages else "finetune"
            stage = self.stages[trained]
            opts = list(stage["opts"]) + self.stages["evaluate"]["opts"] + ["MODEL.WEIGHTS", self._weights(trained)]
            if trained == "retrain":
                opts += self._arch_opts(self._load_best())
            self._run(
                "evaluate",
                "detnas_d2.cli.train",
                stage["config"],
                opts,
                extra=["--eval-only", "--save-results", metrics_file],
            )
            self._check_done("evaluate")
        with open(metrics_file) as f:
            self.summary.setdefault("evaluate", {})["results"] = json.load(f)

    def _reference(self) -> None:
        """Train and evaluate the stock model of the ``reference`` stage (its metrics come from its own run)."""
        self._train("reference")
        self.summary.setdefault("reference", {})["results"] = last_metrics(self.stage_dir("reference"), raw=True)

    def _load_best(self) -> Dict:
        return self._exported()["best"]

    def write_report(self) -> str:
        """``report.md``: each stage's key numbers and plots."""
        lines = ["# detnas_d2 pipeline report", ""]
        minutes = {name: self._stage_minutes(name) for name in STAGES if name in self.stages}
        if any(minutes.values()):
            lines += [
                "Stage times (wall minutes, every run added up, interrupted ones included): "
                + ", ".join(f"{name} {m:.2f}" for name, m in minutes.items())
                + f"; total {sum(minutes.values()):.2f}.",
                "",
            ]
        lines += self._comparison()
        for name in STAGES:
            if name not in self.stages:
                continue
            info = self.summary.get(name, {})
            lines.append(f"## {name}")
            lines.append(f"- output: `{self.stage_dir(name)}`")
            if minutes[name]:
                lines.append(f"- time: {minutes[name]:.2f} min")
            lines += self._alarm(name)
            lines += self._stage_numbers(name, info)
            lines.append("")
        path = os.path.join(self.output_dir, "report.md")
        atomic_write(path, "\n".join(lines) + "\n")
        print(f"[pipeline] report written to {path}")
        return path

    def _alarm(self, name: str) -> List[str]:
        """A loud line for a training stage whose not-learning alarm went off and never recovered; a quiet note
        for a run that was slow to start and then learned."""
        path = os.path.join(self.stage_dir(name), ALARM_FILE)
        if not os.path.isfile(path):
            return []
        with open(path) as f:
            alarm = json.load(f)
        if alarm.get("recovered"):
            return [f"- slow start: at iteration {alarm['iter']} the {alarm['reason']}; it learned later"]
        return [f"- **WARNING: NOT LEARNING** at iteration {alarm['iter']} (never recovered): {alarm['reason']}"]

    def _iterations(self, name: str) -> int | None:
        """``SOLVER.MAX_ITER`` of a training stage as it ran (its saved ``config.yaml``), None if it did not."""
        config = _read_yaml(os.path.join(self.stage_dir(name), "config.yaml")) if name in self.stages else None
        if not isinstance(config, dict):
            return None
        return int(config.get("SOLVER", {}).get("MAX_ITER", 0)) or None

    def _comparison(self) -> List[str]:
        """The searched detector's final AP beside the reference model's, with the detection iterations each
        received; a ratio only when those are equal."""
        final = self.summary.get("evaluate", {}).get("results", {}).get("bbox", {})
        reference = self.summary.get("reference", {}).get("results", {}).get("bbox", {})
        if "AP" not in final or "AP" not in reference:
            return []
        finetune, retrain, ref_iters = (self._iterations(n) for n in ("finetune", "retrain", "reference"))
        searched_iters = (finetune or 0) + (retrain or 0)
        pretrain = self._iterations("pretrain")
        training = " + ".join(
            part
            for part in (
                f"classification pretraining {pretrain} (supernet)" if pretrain else "",
                f"supernet fine-tuning {finetune}" if finetune else "",
                f"retraining {retrain} from the inherited weights" if retrain else "",
            )
            if part
        )
        nan = float("nan")
        lines = [
            "| model | training (iterations) | detection iterations | bbox AP | AP50 |",
            "|---|---|---|---|---|",
            f"| searched backbone (evaluate) | {training} | {searched_iters} | {final['AP']:.2f} | "
            f"{final.get('AP50', nan):.2f} |",
            f"| reference (stock detectron2) | from scratch | {ref_iters} | {reference['AP']:.2f} | "
            f"{reference.get('AP50', nan):.2f} |",
            "",
        ]
        if searched_iters == ref_iters and reference["AP"] <= 0:
            lines.append(
                f"Searched vs reference at equal detection iterations ({ref_iters} each): the reference's AP is 0."
            )
        elif searched_iters == ref_iters:
            lines.append(
                f"Searched / reference AP at equal detection iterations ({ref_iters} each): "
                f"{final['AP'] / reference['AP']:.2f}, one run each (single runs on the shapes data differ by "
                "several AP between seeds: README 'Ground truth')."
            )
        else:
            lines.append(
                f"Unequal detection iterations ({searched_iters} vs {ref_iters}): no ratio; train the reference for "
                f"{searched_iters} iterations to compare."
            )
        return lines + [""]

    def _stage_numbers(self, name: str, info: Dict) -> List[str]:
        if name == "search":
            plot = os.path.join(self.stage_dir("search"), "search_progress.png")
            return [
                f"- best architecture: `{info.get('best_arch')}`",
                f"- best fitness: {info.get('best_fitness')}",
                f"- best costs: {info.get('best_costs')}",
                f"- progress plot: ![search progress]({os.path.relpath(plot, self.output_dir)})",
            ]
        if name in ("evaluate", "reference"):
            return [
                f"- {task}: " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
                for task, metrics in info.get("results", {}).items()
            ]
        return [f"- last metrics: {last_metrics(self.stage_dir(name))}"]


def _end_with_parent() -> None:
    """In a stage's process, before it starts: SIGTERM when the pipeline dies, ``kill -9`` included (Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _read_json(path: str):
    """The JSON content of ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _read_yaml(path: str):
    """The YAML content of ``path``, or None when it is missing or unreadable."""
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def _readable_checkpoint(path: str) -> bool:
    """Whether ``path`` is a checkpoint torch can load (a truncated or empty file is not)."""
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # torch.load / pickle raise many types on a missing, damaged or foreign file
        return False
    return True


def last_metrics(output_dir: str, raw: bool = False) -> Dict:
    """The evaluation numbers of the last line of ``metrics.json`` that has any (empty if none): flat
    ``{"bbox/AP": ...}`` rounded, or with ``raw`` nested by task like ``final_metrics.json``."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.isfile(path):
        return {}
    found = {}
    with open(path) as f:
        for line in f:
            entry = json.loads(line)
            evals = {
                k: round(v, 3)
                for k, v in entry.items()
                if "/" in k and k.split("/")[0] in ("bbox", "classification") and "path" not in k
            }
            if evals:
                found = evals
    if not raw:
        return found
    nested: Dict[str, Dict[str, float]] = {}
    for key, value in found.items():
        task, metric = key.split("/", 1)
        nested.setdefault(task, {})[metric] = value
    return nested


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="pipeline YAML")
    parser.add_argument("--output-dir", default=None, help="overrides the file's output_dir")
    parser.add_argument("--num-gpus", type=int, default=1, help="processes per stage (detectron2 launch)")
    parser.add_argument("--dist-url", default="auto")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # end the running stage too
    spec = load_pipeline(args.config_file)
    launch_args = ["--num-gpus", str(args.num_gpus), "--dist-url", args.dist_url]
    try:
        Pipeline(spec, args.output_dir or spec["output_dir"], launch_args).run()
    except PipelineError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
