"""What GRPO's group advantage says about each action in the demo: one demo run, every trajectory recorded.

Runs ``apps/train.py`` with the module's ``score`` and credit assignment wrapped (nothing else changes: same config, same
numbers) and records, per training trajectory, its image's subset, its tool calls, its rank reward, BATE, group
advantage and the advantage its first decision carried (the same under ``grpo.credit: sequence``). Then, per subset and first action, within each image's group (what the policy gradient compares): the
advantage and rank reward of trajectories that called a tool minus those of their tool-free siblings, and the calling
rate per subset over the run. A call the policy should learn to make has a rank-reward gain; what the advantage adds
beyond that is BATE's.

    python benchmarks/demo_credit.py --out runs/demo-credit.json -- fit --config configs/demo.yaml \\
        --trainer.default_root_dir runs/demo-credit                       # the demo's time (≈ 10 min on 2 cores)
    python benchmarks/demo_credit.py --out runs/demo-credit.json --report  # the tables again, from the records

``--train_on oracle`` replaces the total reward by format + 1 for the subset's right first action (plain: answer,
exposure: the Gamma Corrector, scale: the Magnifier): not a reward anyone could train with, but the strongest
per-image signal there is, so it measures whether the gate can become image-dependent at all under a config's
optimizer and KL anchor. ``--train_on action_credit`` replaces it by format + the mean rank reward of the trajectories
in the image's group that took the same first action: the real rewards' verdict on the gate's choice, without the
written score's sampling noise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

SUBSETS = ("plain", "exposure_hidden", "scale_hidden")
TOOLS = ("magnifier", "gamma_corrector")
RIGHT_FIRST_ACTION = {"plain": None, "exposure_hidden": "gamma_corrector", "scale_hidden": "magnifier"}


def record(out: Path, train_args: list[str], train_on: str = "config") -> None:
    """Train with ``train_args`` and write one row per training trajectory to ``out`` (JSON); ``train_on``: the
    config's rewards, ``oracle`` (format + the right first action) or ``action_credit`` (format + the group's mean
    rank reward per first action)."""
    import dataclasses

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "apps"))
    import train

    import tooliqa_trainer.module as module
    from tooliqa_data.hidden import read_subsets
    from tooliqa_trainer.credit import action_path, decision_levels

    rows, subsets, pending = [], {}, []
    score = module.GRPOModule.score

    def scored(self, groups, batch):
        rewards = score(self, groups, batch)
        replaced = rewards.format.clone()  # [B, G]: format + the train_on term
        for i, (group, item) in enumerate(zip(groups, batch.items)):
            path = Path(item.image).resolve()
            if path not in subsets:
                subsets.update(read_subsets(path.parent.parent / "manifest.csv"))
            calls = [[turn.call.name for turn in t.turns if turn.call is not None] for t in group]
            first = [names[0] if names else None for names in calls]
            for k, action in enumerate(first):
                if train_on == "oracle":
                    replaced[i, k] += float(action == RIGHT_FIRST_ACTION.get(subsets.get(path)))
                elif train_on == "action_credit":
                    replaced[i, k] += rewards.rank[i][[j for j, other in enumerate(first) if other == action]].mean()
                pending.append(
                    dict(step=self.global_step, image=i, subset=subsets.get(path, "?"), tools=calls[k],
                         rank=float(rewards.rank[i][k]), bate=float(rewards.bate[i][k]))
                )  # fmt: skip
        return rewards if train_on == "config" else dataclasses.replace(rewards, total=replaced)

    def recorded(credit):
        def assign(groups, advantages, tokenizer):  # advantages [B, G]; the decision's credit at the first gate
            per_token = credit(groups, advantages, tokenizer)
            trajectories = [t for group in groups for t in group]
            for row, advantage, tokens, t in zip(pending, advantages.flatten().tolist(), per_token, trajectories):
                turns = [(p, lv) for p, lv in decision_levels(t, tokenizer) if lv is not None]
                action = [p[lv == 1] for p, lv in turns[:1]]  # the first gate's action tokens
                gate = float(tokens[action[0][0]]) if action and len(action[0]) else advantage
                path = action_path(t)  # the first gate's action: a refused or unparsed call is not in row["tools"]
                rows.append(
                    {**row, "advantage": advantage, "gate_advantage": gate, "first_action": path[0] if path else None}
                )
            pending.clear()
            return per_token

        return assign

    make_credit = module.make_credit
    module.GRPOModule.score = scored
    module.make_credit = lambda name: recorded(make_credit(name))
    train.main(train_args)
    out.write_text(json.dumps(rows))


def report(rows: list[dict]) -> None:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["step"], row["image"])].append(row)
    print(f"{len(rows)} trajectories, {len(groups)} image groups")
    print("within an image's group, tool trajectories minus tool-free ones (mean ± s.e. over groups with both):")
    print(
        f"  {'subset':16s} {'first call':16s} {'groups':>6s} {'Δ advantage':>16s} {'Δ rank reward':>18s} {'BATE':>6s}"
    )
    for subset in SUBSETS:
        for tool in TOOLS:
            gains, ranks, bates = [], [], []
            for group in groups.values():
                if group[0]["subset"] != subset:
                    continue
                called = [r for r in group if r["tools"][:1] == [tool]]
                free = [r for r in group if not r["tools"]]
                if called and free:
                    gains.append(np.mean([r["advantage"] for r in called]) - np.mean([r["advantage"] for r in free]))
                    ranks.append(np.mean([r["rank"] for r in called]) - np.mean([r["rank"] for r in free]))
                    bates.append(np.mean([r["bate"] for r in called]))
            if not gains:
                continue
            se = lambda values: np.std(values) / np.sqrt(len(values))  # noqa: E731
            print(f"  {subset:16s} {tool:16s} {len(gains):6d} {np.mean(gains):+8.3f} ± {se(gains):.3f} "
                  f"{np.mean(ranks):+10.4f} ± {se(ranks):.4f} {np.mean(bates):6.3f}")  # fmt: skip
    if all("first_action" in row for row in rows):
        print("credit of the first gate's action (σ; mean ± s.e. over image groups, each group's action once):")
        print(f"  {'subset':16s} " + " ".join(f"{action:>16s}" for action in ("answer", *TOOLS)))
        for subset in SUBSETS:
            cells = []
            for action in ("answer", *TOOLS):
                credits = []
                for group in groups.values():
                    taken = [r for r in group if r["first_action"] == action]
                    if group[0]["subset"] == subset and taken:
                        credits.append(taken[0]["gate_advantage"])
                se = np.std(credits) / np.sqrt(len(credits)) if credits else float("nan")
                cells.append(f"{np.mean(credits) if credits else float('nan'):+7.2f} ± {se:.2f}")
            print(f"  {subset:16s} " + " ".join(f"{cell:>16s}" for cell in cells))
    steps = max(row["step"] for row in rows) + 1
    print("share of trajectories calling each tool, per subset and third of the run (magnifier / gamma_corrector):")
    for third in range(3):
        low, high = third * steps // 3, (third + 1) * steps // 3
        part = [row for row in rows if low <= row["step"] < high]
        cells = []
        for subset in SUBSETS:
            mine = [row for row in part if row["subset"] == subset]
            shares = [np.mean([tool in row["tools"] for row in mine]) if mine else float("nan") for tool in TOOLS]
            cells.append(f"{subset} {shares[0]:.2f} / {shares[1]:.2f}")
        print(f"  steps {low:3d}–{high - 1:3d}: " + " | ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the records (written, or read with --report)")
    parser.add_argument("--report", action="store_true", help="only print the tables of existing records")
    parser.add_argument(
        "--train_on",
        choices=("config", "oracle", "action_credit"),
        default="config",
        help="the config's rewards; format + the right first action; format + the group's rank mean per first action",
    )
    parser.add_argument("train_args", nargs="*", help="apps/train.py's arguments, after --")
    args = parser.parse_args()
    if not args.report:
        record(args.out, args.train_args, args.train_on)
    report(json.loads(args.out.read_text()))


if __name__ == "__main__":
    main()
