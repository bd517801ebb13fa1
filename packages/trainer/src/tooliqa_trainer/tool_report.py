"""What the tools did on the held-out set (paper Table 6, per subset) and the run's curves (paper Fig. 4).

The rows come from the trainer's validation pass: one per held-out image, its read-out score, its MOS, its subset
(from a manifest's ``subset`` column, e.g. the hidden-evidence set) and the tools its recorded trajectory called
successfully. Everything here is plain Python over those rows, so tests build rows by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tooliqa_agent.trajectory import Trajectory
from tooliqa_data import plcc, srcc

__all__ = [
    "REWARD_PARTS",
    "ValidationRow",
    "call_selectivity",
    "calls_by_tool",
    "draw_curves",
    "tool_breakdown",
    "trajectory_metrics",
]

TOOL_SUBSET = {"gamma_corrector": "exposure_hidden", "magnifier": "scale_hidden"}
"""The subset on which each tool is the right one (``tooliqa_data.hidden``)."""


@dataclass(frozen=True)
class ValidationRow:
    """One held-out image after a validation pass."""

    score: float | None
    """The read-out score (None: no valid score)."""
    mos: float
    """Ground truth, higher = better."""
    subset: str | None
    """The image's subset, None when its manifest has no ``subset`` column."""
    tools: tuple[str, ...]
    """Tools its recorded trajectory called successfully, in call order (empty: tool-free)."""
    other_scores: tuple[tuple[str, float | None], ...] = ()
    """The same trajectories read out otherwise, ``(readout name, score)`` (``ValidationConfig.also_readouts``)."""


def _correlations(rows: Sequence[ValidationRow]) -> str:
    scored = [(r.score, r.mos) for r in rows if r.score is not None]
    if len(scored) < 3 or len({s for s, _ in scored}) < 2 or len({m for _, m in scored}) < 2:
        return "—"
    scores, mos = [s for s, _ in scored], [m for _, m in scored]
    return f"{srcc(scores, mos):.3f} / {plcc(scores, mos):.3f}"


_GROUPS = (
    ("all images", lambda r: True),
    ("tool-free", lambda r: not r.tools),
    ("with a tool", lambda r: bool(r.tools)),
    ("magnifier", lambda r: "magnifier" in r.tools),
    ("gamma_corrector", lambda r: "gamma_corrector" in r.tools),
)


def tool_breakdown(rows: Sequence[ValidationRow]) -> str:
    """Markdown table: per group of trajectories (tool-free, with a tool, per tool) and per subset, the share of
    images in the group and SRCC / PLCC within it (paper Table 6; "—" where a group is too small or constant)."""
    subsets = sorted({r.subset for r in rows if r.subset is not None})
    columns = [("all", list(rows))] + [(s, [r for r in rows if r.subset == s]) for s in subsets]
    head = "| trajectories | " + " | ".join(f"{name}: share, SRCC / PLCC" for name, _ in columns) + " |"
    lines = [head, "|---" * (len(columns) + 1) + "|"]
    for label, member in _GROUPS:
        cells = []
        for _, part in columns:
            group = [r for r in part if member(r)]
            share = len(group) / len(part) if part else 0.0
            cells.append(f"{share:.0%} (n={len(group)}), {_correlations(group)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def call_selectivity(rows: Sequence[ValidationRow]) -> dict[str, float]:
    """Per tool, the share of its calls that fall on the subset it serves; per subset, its calling rate.

    Keys: ``on_target/<tool>`` (NaN when the tool was never called) and ``rate/<subset>`` (images with ≥ 1
    successful call among the subset's images).
    """
    out: dict[str, float] = {}
    for tool, subset in TOOL_SUBSET.items():
        called = [r for r in rows if tool in r.tools]
        out[f"on_target/{tool}"] = sum(r.subset == subset for r in called) / len(called) if called else float("nan")
    for subset in sorted({r.subset for r in rows if r.subset is not None}):
        part = [r for r in rows if r.subset == subset]
        out[f"rate/{subset}"] = sum(bool(r.tools) for r in part) / len(part)
    return out


REWARD_PARTS = ("total", "rank", "format", "bate")
"""The reward parts ``curves.png`` plots (batch means, ``train/reward/mean_<part>``)."""


def draw_curves(
    path: Path,
    held_out: Sequence[tuple[int, float, float]],
    rho: Sequence[tuple[int, float]],
    band: tuple[float, float] = (0.35, 0.65),
    target: float = 0.5,
    rewards: Mapping[str, Sequence[tuple[int, float]]] | None = None,
) -> Path:
    """Write the run's curves as a PNG: held-out SRCC / PLCC vs step; the batch tool rate ρ vs step with the BATE
    band shaded (paper Fig. 4); and, given ``rewards``, the batch-mean reward parts vs step.
    ``held_out``: ``(step, srcc, plcc)``; ``rho``: ``(step, ρ)``; ``rewards``: part name → ``(step, mean)``."""
    from matplotlib.figure import Figure  # Agg through a bare Figure: headless, no pyplot state

    panels = 3 if rewards else 2
    figure = Figure(figsize=(4.5 * panels, 3.4), dpi=110)
    axes = figure.subplots(1, panels)
    left, right = axes[0], axes[1]
    if held_out:
        steps = [s for s, _, _ in held_out]
        left.plot(steps, [v for _, v, _ in held_out], marker="o", label="SRCC")
        left.plot(steps, [v for _, _, v in held_out], marker="s", label="PLCC")
        left.legend(loc="lower right", fontsize=8)
    left.set_xlabel("optimizer step")
    left.set_ylabel("held-out correlation")
    left.set_title("held-out SRCC / PLCC", fontsize=10)
    right.axhspan(*band, color="tab:green", alpha=0.15, label=f"BATE band [{band[0]:g}, {band[1]:g}]")
    right.axhline(target, color="tab:green", linewidth=0.8, linestyle="--", label=f"ρ̂ = {target:g}")
    if rho:
        right.plot(
            [s for s, _ in rho], [v for _, v in rho], linewidth=1.0, marker=".", color="tab:blue", label="batch ρ"
        )
    right.set_ylim(0, 1)
    right.set_xlabel("optimizer step")
    right.set_ylabel("tool-use rate ρ")
    right.set_title("batch tool-use rate", fontsize=10)
    right.legend(loc="upper right", fontsize=8)
    if rewards:
        parts = axes[2]
        drawn = [(name, points) for name, points in rewards.items() if points]
        for name, points in drawn:
            parts.plot([s for s, _ in points], [v for _, v in points], linewidth=1.0, marker=".", label=name)
        parts.set_xlabel("optimizer step")
        parts.set_ylabel("batch-mean reward")
        parts.set_title("reward parts", fontsize=10)
        if drawn:  # none before the first training step (the step-0 held-out pass)
            parts.legend(loc="best", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def calls_by_tool(trajectories: Sequence[Trajectory]) -> dict[str, int]:
    """Successful calls per tool name over the trajectories."""
    counts: dict[str, int] = {}
    for trajectory in trajectories:
        for turn in trajectory.turns:
            if turn.tool_ok:
                counts[turn.call.name] = counts.get(turn.call.name, 0) + 1
    return counts


def trajectory_metrics(trajectories: Sequence[Trajectory], tool_names: Sequence[str], prefix: str) -> dict[str, float]:
    """Per-trajectory means of one step: calls (successful, failed, per enabled tool: 0 for one nobody called, so
    every rank logs the same keys), parse failures, the mean parsed score and the mean response length."""
    n = len(trajectories)
    calls = calls_by_tool(trajectories)
    scores = [t.score for t in trajectories if t.score is not None]
    return {
        f"{prefix}/tool_calls/successful": sum(t.num_successful_calls for t in trajectories) / n,
        f"{prefix}/tool_calls/failed": sum(t.num_failed_calls for t in trajectories) / n,
        **{f"{prefix}/tool_calls/{name}": calls.get(name, 0) / n for name in tool_names},
        f"{prefix}/parse_failures": sum(t.score is None for t in trajectories) / n,
        f"{prefix}/score_mean": sum(scores) / len(scores) if scores else float("nan"),
        f"{prefix}/response_tokens/mean": sum(t.num_output_tokens for t in trajectories) / n,
    }


def step_metrics(trajectories: Sequence[Trajectory], rewards, loss, seconds: Mapping[str, float], lr: float,
                 tool_names: Sequence[str]) -> dict[str, float]:  # fmt: skip
    """One training step's flat metrics: rewards and ρ (``RewardOutput``), the loss stats (``LossStats``), the
    learning rate, per-trajectory tool and length metrics, and the step's time split."""
    return {
        **rewards.stats.log("train/reward"),
        **loss.log("train"),
        "train/reward/total": rewards.total.float().mean().item(),
        "train/lr": lr,
        **trajectory_metrics(trajectories, tool_names, "train"),
        **{f"time/{name}_s": value for name, value in seconds.items()},
    }
