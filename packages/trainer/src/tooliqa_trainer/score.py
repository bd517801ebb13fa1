"""Score image files with a Tool-IQA checkpoint: ``score_images`` (Python) and ``apps/score.py`` (command line).

The same path as evaluation: the engine loads the checkpoint (``from_pretrained`` on a folder or hub id), an
:class:`~tooliqa_trainer.assessor.AgentAssessor` runs the protocol, and each image gets its
:class:`~tooliqa_data.Assessment` — the score, the tool calls and every turn of the first trajectory — without
labels, a run folder or a report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig, SamplingConfig
from tooliqa_data import Assessment
from tooliqa_trainer.errors import UsageError

__all__ = ["IMAGE_SUFFIXES", "ScoreJob", "ScoredImage", "expand_images", "score_images", "summarise_calls"]

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
"""What a folder argument contributes (case-insensitive)."""


@dataclass(frozen=True)
class ScoreJob:
    """Which model scores the images, and how (the fields ``apps/eval.py`` has, without data or output folder)."""

    ckpt: str = "guanq/Tool-IQA-8B"
    """A local model folder (an export such as ``runs/demo/hf``, a downloaded copy of the official weights) or a hub
    id (the official Tool-IQA-8B weights by default; needs the network or the hub cache)."""
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    """The assessment protocol the model was trained with (defaults: the paper's prompts, both tools, 2 rounds)."""
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.0))
    """Decoding (greedy by default: one trajectory per image)."""
    samples: int = 1
    """Trajectories per image (> 1 needs temperature > 0), read out as one score."""
    readout: Literal["sampled", "expected"] = "sampled"
    """The mean written score of the trajectories, or the probability-weighted score (hf engine only)."""
    engine: EngineConfig = field(default_factory=EngineConfig)
    """Engine (``hf`` or ``vllm``) and its loading options; its ``model`` defaults to ``ckpt``."""
    batch_size: int = 8
    """Images per rollout batch."""


@dataclass(frozen=True)
class ScoredImage:
    """One image's result."""

    path: Path
    """The image file."""
    assessment: Assessment
    """Score, status, tool calls and the conversation's turns (``tooliqa_data.Assessment``)."""

    @property
    def score(self) -> float | None:
        """The predicted quality in [1, 5] (None: no valid score, see ``assessment.status`` / ``detail``)."""
        return self.assessment.score


def expand_images(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their image files (sorted, recursive); a missing path is a :class:`UsageError`."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise UsageError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) in this folder")
            out += found
        elif path.is_file():
            out.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return out


def score_images(
    images: Sequence[str | Path], ckpt: str | None = None, job: ScoreJob | None = None
) -> list[ScoredImage]:
    """Score image files (folders expand to their images) with a checkpoint.

    Args:
        images: files and/or folders.
        ckpt: the model, overriding ``job.ckpt`` (a folder or a hub id, e.g. ``"guanq/Tool-IQA-8B"``).
        job: protocol, sampling, engine and batch size (default :class:`ScoreJob`, the paper's protocol).

    Returns:
        One :class:`ScoredImage` per image, in order; an unreadable image has ``score`` None and its reason in
        ``assessment.detail``.

    Raises:
        UsageError: a missing image path, or a checkpoint that is neither a folder nor a reachable hub id.
    """
    job = job or ScoreJob()
    if ckpt is not None:
        job = dataclasses.replace(job, ckpt=ckpt)
    files = expand_images(images)
    return list(_score(files, job))


def _score(files: list[Path], job: ScoreJob) -> Iterator[ScoredImage]:
    from tooliqa_agent import Agent
    from tooliqa_data.images import ImageError, load_image
    from tooliqa_trainer.assessor import AgentAssessor

    engine = _load_engine(job)
    try:
        agent = Agent(engine, engine.processor, job.protocol)
        assessor = AgentAssessor(agent, job.sampling, samples=job.samples, readout=job.readout)
        for start in range(0, len(files), job.batch_size):
            batch = files[start : start + job.batch_size]
            loaded, failed = [], {}
            for path in batch:
                try:
                    loaded.append((path, load_image(path, keep_depth=True)))
                except ImageError as error:
                    failed[path] = Assessment(score=None, status="image_error", detail=str(error))
            assessed = iter(assessor(None, [image for _, image in loaded]) if loaded else [])
            by_path = {path: next(assessed) for path, _ in loaded}
            for path in batch:
                yield ScoredImage(path, failed.get(path) or by_path[path])
    finally:
        engine.release()


def _load_engine(job: ScoreJob):
    from tooliqa_agent import make_engine

    config = job.engine if job.engine.model is not None else dataclasses.replace(job.engine, model=job.ckpt)
    folder = Path(config.model)
    if not folder.is_dir() and (folder.is_absolute() or config.model.startswith(".") or config.model.count("/") != 1):
        raise UsageError(f"--ckpt {config.model}: no such folder (and not a hub id like guanq/Tool-IQA-8B)")
    try:
        return make_engine(config)
    except OSError as error:  # transformers: not on the hub, offline without a cached copy, or no weights
        first = str(error).strip().splitlines()[0]
        raise UsageError(
            f"--ckpt {config.model}: could not load it ({first}); for a hub id, download it where the network "
            f"is (hf download {config.model} --local-dir DIR) and pass --ckpt DIR"
        ) from None


def build_parser(description: str | None):
    """``apps/score.py``'s parser: image paths, then ``--ckpt`` and one flag per :class:`ScoreJob` field."""
    from jsonargparse import ActionConfigFile, ArgumentParser, set_parsing_settings

    from tooliqa_trainer.cli_help import HelpFormatter

    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = ArgumentParser(prog="score.py", description=description, allow_abbrev=False, formatter_class=HelpFormatter)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    parser.add_argument("images", nargs="+", type=str, help="image files and/or folders of images")
    parser.add_class_arguments(ScoreJob, as_group=False)
    return parser


def summarise_calls(assessment: Assessment) -> str:
    """The tool calls in one short phrase, e.g. ``magnifier [120, 40, 560, 380]; gamma_corrector γ=0.5 (failed: …)``;
    ``no tools`` for none."""
    parts = []
    for call in assessment.tool_calls:
        if not call.ok:
            parts.append(f"{call.name or '?'} failed: {call.error}")
        elif call.box is not None:
            parts.append(f"{call.name} {list(call.box)}")
        elif call.gamma is not None:
            parts.append(f"{call.name} γ={call.gamma:g}")
        else:
            parts.append(call.name)
    return "; ".join(parts) if parts else "no tools"
