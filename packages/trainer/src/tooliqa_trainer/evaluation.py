"""Zero-shot or trained-checkpoint evaluation: a checkpoint + datasets → the data package's evaluation runner.

``apps/eval.py`` is a thin parser over :func:`run_evaluation`. The policy is loaded through the same engine path as
rollouts (``AutoModelForImageTextToText.from_pretrained`` on a directory or hub id for ``hf``; vLLM's own loader for
``vllm``), scored through :class:`~tooliqa_trainer.assessor.AgentAssessor` like training-time validation, and every
setting that changes a number (protocol, sampling, engine, seed, the weights' fingerprint) is written into the
output's run record, so a rerun with other settings or weights cannot silently resume into the same folder. Every
operator error is found before the model loads (:func:`prepare`, ``tooliqa_trainer.preflight``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tooliqa_agent import EngineConfig, ProtocolConfig, SamplingConfig
from tooliqa_data import Dataset, EvalConfig, EvalResult, LabelError, RunMetadata, parse_dataset_spec
from tooliqa_data.runner import check_resumable
from tooliqa_trainer.preflight import UsageError, check_ckpt, check_device, check_out
from tooliqa_trainer.weights import check_finite, fingerprint

__all__ = ["EvalJob", "UsageError", "prepare", "run_evaluation"]


@dataclass(frozen=True)
class EvalJob:
    """One evaluation run: which model, on which data, with which protocol, into which folder."""

    ckpt: str
    """Checkpoint directory (an exported Tool-IQA model, a tiny kit, a local Qwen3-VL) or a hub id (zero-shot)."""
    data: tuple[str, ...]
    """Datasets as ``NAME[/SPLIT]=ROOT[:LABELS]`` (e.g. ``clive=/data/ChallengeDB_release``); Table 1 columns follow
    this order."""
    out: Path = Path("runs/eval")
    """Output folder (predictions.csv, metrics.json, table.md, tools.md, plots, report.html)."""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """The assessment protocol; ablations: ``tools`` none/magnifier/gamma/both, ``rubric`` on/off."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))
    """Decoding of the trajectories (greedy by default: one trajectory per image)."""
    samples: int = 1
    """Trajectories per image (> 1 needs temperature > 0); the readout turns them into one score."""
    readout: Literal["sampled", "expected"] = "sampled"
    """``tooliqa_trainer.readout``: the mean parsed score, or the probability-weighted score (hf engine only)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Engine (``hf`` or ``vllm``) and its loading options; its ``model`` defaults to ``ckpt``."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Runner settings: batch size, resumption, limits, bootstrap, report."""

    def __post_init__(self) -> None:
        if not self.data:
            raise UsageError("--data: give at least one dataset as NAME[/SPLIT]=ROOT[:LABELS]")
        if self.engine.name == "scripted":
            raise UsageError("--engine.name scripted: the scripted engine replays texts; evaluate with hf or vllm")

    def metadata(self) -> RunMetadata:
        """Everything that changes a prediction, flattened for the run record."""
        settings: dict[str, str | int | float | bool | None] = {}
        for prefix, config in (("protocol", self.protocol), ("sampling", self.sampling), ("engine", self.engine)):
            for key, value in _flatten(dataclasses.asdict(config)).items():
                settings[f"{prefix}.{key}"] = value
        settings.update(samples=self.samples, readout=self.readout)
        return RunMetadata(model=self.ckpt, seed=self.sampling.seed, settings=settings)


def build_parser(description: str | None = None):
    """``apps/eval.py``'s parser: ``--config`` YAML plus one flag per ``EvalJob`` field (``--protocol.tools``, …)."""
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    import tooliqa_trainer.config  # noqa: F401 (registers the rubric lines' YAML form, as for apps/train.py)

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(prog="eval.py", description=description, default_config_files=[])
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_argument("--data", nargs="+", type=str, required=True, help="datasets: NAME[/SPLIT]=ROOT[:LABELS] …")
    parser.add_class_arguments(EvalJob, as_group=False, skip={"data"})
    return parser


def prepare(job: EvalJob) -> tuple[list[Dataset], RunMetadata]:
    """Everything that can be checked without the model, in one pass: ``--out``, ``--engine.device``, ``--ckpt``
    (folder, files, hub reachability), ``--data`` (specs, duplicates, label files), and whether ``--out`` may be
    resumed with these settings and weights. Raises :class:`~tooliqa_trainer.preflight.UsageError` (or a
    ``LabelError`` / ``CheckpointError`` naming the file) with one line saying what to change."""
    check_out(job.out)
    check_device(job.engine.device)
    ckpt = job.engine.model if job.engine.model is not None else job.ckpt
    check_ckpt(ckpt, "--engine.model" if job.engine.model is not None else "--ckpt")
    specs = []
    for text in job.data:
        try:
            specs.append(parse_dataset_spec(text))
        except ValueError as err:
            raise UsageError(f"--data {text}: {err}") from None
    names = [spec.name for spec in specs]
    for name in names:
        if names.count(name) > 1:
            given = [text for text, spec in zip(job.data, specs) if spec.name == name]
            raise UsageError(f"--data: dataset {name!r} is given {len(given)} times ({', '.join(given)}); give it once")
    datasets = []
    for text, spec in zip(job.data, specs):
        try:
            datasets.append(spec.load())
        except LabelError:
            raise  # names the label file and line already
        except (ValueError, KeyError) as err:  # an unknown split or adapter option
            raise UsageError(f"--data {text}: {str(err).strip(chr(39))}") from None
    metadata = dataclasses.replace(job.metadata(), weights=fingerprint(ckpt))
    check_resumable(job.out, metadata, job.eval.resume)
    return datasets, metadata


def run_evaluation(job: EvalJob) -> EvalResult:
    """Check every operator error (:func:`prepare`), load the model, refuse non-finite weights, assess every image
    of ``job.data`` and write the paper's tables into ``job.out``."""
    from tooliqa_agent import Agent, make_engine
    from tooliqa_data import evaluate
    from tooliqa_trainer.assessor import AgentAssessor

    datasets, metadata = prepare(job)
    engine_config = job.engine if job.engine.model is not None else dataclasses.replace(job.engine, model=job.ckpt)
    engine = make_engine(engine_config)
    try:
        model = getattr(engine, "model", None)
        if model is not None:
            check_finite(model, engine_config.model)
        agent = Agent(engine, engine.processor, job.protocol)
        assessor = AgentAssessor(
            agent, job.sampling, views=job.eval.report_samples > 0, samples=job.samples, readout=job.readout
        )
        return evaluate(datasets, assessor, job.out, job.eval, metadata)
    finally:
        engine.release()


def _flatten(tree: dict, prefix: str = "") -> dict[str, str | int | float | bool | None]:
    flat: dict[str, str | int | float | bool | None] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            flat[name] = ",".join(str(v) for v in value)
        elif value is None or isinstance(value, str | int | float | bool):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat
