"""What the demo's warm start can teach: one score readout trained on every subset's views at once, read per subset.

``benchmarks/demo_probe.py --set hidden`` fits a ridge probe per subset — each subset its own direction. The demo's
single held-out SRCC needs more: one model that reads every subset's right view on the same scale. This trains the
demo kit's language model (vision tower frozen, as in the demo) with the warm start's loss
(``tooliqa_trainer.warm_start``: cross-entropy of the score digit against the two-hot MOS) on scripted conversations
of the demo's protocol — for every training image one answering at once, one after the Gamma Corrector's
``brighten`` and one after the Magnifier's centre box — and scores the held-out references by the
probability-weighted score per conversation path: the original view against the right tool's view per subset.

    python benchmarks/demo_warm_probe.py                        # the demo's kit and set (≈ 1 min on 2 cores)
    python benchmarks/demo_warm_probe.py --exposure_bits 8      # the earlier 8-bit exposure-hidden files
    python benchmarks/demo_warm_probe.py --exposure_bits 8 --dark_gain 0.1   # another 8-bit darkness
    python benchmarks/demo_warm_probe.py --random_rubric        # each conversation's rubric levels drawn at random
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

RUBRIC = (
    "<thinking></thinking><answer>\nSharpness: High\nNoise: None\nArtifacts: Minor\nExposure: Poor\n"
    "Saliency Visibility: Subject Clear\n</answer>"
)
REPLIES = {
    "original": [RUBRIC, "<thinking></thinking><answer>3</answer>"],
    "gamma": [
        RUBRIC,
        '<thinking></thinking><tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>',
        "<thinking></thinking><answer>3</answer>",
    ],
    "magnifier": [
        RUBRIC,
        '<thinking></thinking><tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [250, 250, 750, 750]}}\n'
        "</tool_call>",
        "<thinking></thinking><answer>3</answer>",
    ],
}
RIGHT = {"plain": "original", "exposure_hidden": "gamma", "scale_hidden": "magnifier"}
PROMPTS = dict(
    rubric="Assess Sharpness, Noise, Artifacts, Exposure and Saliency Visibility.",
    gate="Answer with a score, or call one tool.",
)  # fmt: skip  (configs/demo.yaml's)


def random_rubric(rng: np.random.Generator) -> str:
    """A rubric turn with uniformly drawn levels: what the demo's random policy writes before its gate."""
    from tooliqa_agent.grammar import RUBRIC as ATTRIBUTES

    lines = "".join(f"{a.name}: {a.levels[rng.integers(len(a.levels))]}\n" for a in ATTRIBUTES)
    return f"<thinking></thinking><answer>\n{lines}</answer>"


def conversations(processor, protocol, images, paths=tuple(REPLIES), rubric_seed: int | None = None) -> dict:
    """One scripted trajectory per image, for each of ``paths`` (keys of :data:`REPLIES`): ``{path: [N]
    trajectories}``. With ``rubric_seed`` each conversation's rubric levels are drawn at random (else the fixed
    :data:`RUBRIC`)."""
    from tooliqa_agent import Agent
    from tooliqa_agent.engines.scripted import ScriptedEngine
    from tooliqa_agent.types import SamplingConfig

    rng = None if rubric_seed is None else np.random.default_rng(rubric_seed)

    def reply(request, replies):
        if request.turn == 0 and rng is not None:
            return random_rubric(rng)
        return replies[request.turn]

    out = {}
    for path in paths:
        replies = REPLIES[path]
        agent = Agent(ScriptedEngine(processor, lambda request, r=replies: reply(request, r)), processor, protocol)
        out[path] = [
            group[0]
            for k in range(0, len(images), 40)
            for group in agent.rollout(images[k : k + 40], 1, SamplingConfig(max_new_tokens=200))
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kit", type=Path, default=Path("runs/tiny-qwen3vl-tools"), help="the demo's tiny kit")
    parser.add_argument("--dark_gain", type=float, default=None, help="exposure-hidden gain (default: the set's)")
    parser.add_argument("--exposure_bits", type=int, default=16, help="exposure-hidden files: 8 or 16 bits")
    parser.add_argument("--epochs", type=int, default=1, help="passes over the 3 × training conversations")
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (the demo's warm start)")
    parser.add_argument(
        "--random_rubric",
        action="store_true",
        help="random rubric levels per conversation, as the demo's policy writes",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    import transformers

    from tooliqa_agent.grammar import GrammarConfig
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_data import load_image
    from tooliqa_data.hidden import HiddenEvidenceConfig, make_hidden_evidence_set, read_subsets
    from tooliqa_trainer.readout import ReadoutContext, expected_scores
    from tooliqa_trainer.warm_start import digit_targets, score_cross_entropy

    if not (args.kit / "config.json").is_file():
        raise SystemExit(f"{args.kit}: no kit there; run the demo once (it builds it) or pass --kit")
    processor = transformers.AutoProcessor.from_pretrained(args.kit)
    model = transformers.AutoModelForImageTextToText.from_pretrained(args.kit, dtype=torch.float32)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_("visual" not in name)  # the demo freezes the vision tower
    grammar = GrammarConfig(max_thinking_chars=0, max_note_chars=0, max_gap_chars=0, score_decimals=0)
    protocol = ProtocolConfig(tools="both", rubric=True, grammar=grammar, prompts=PromptConfig(**PROMPTS))
    gain = {} if args.dark_gain is None else {"dark_gain": args.dark_gain}
    config = HiddenEvidenceConfig(exposure_bits=args.exposure_bits, **gain)
    with tempfile.TemporaryDirectory() as work:
        parts = {}
        for part, refs, seed in (("train", 24, 0), ("held_out", 4, 1)):  # the demo's split
            items = make_hidden_evidence_set(Path(work) / part, refs, seed, config)
            subsets = read_subsets(Path(work) / part / "manifest.csv")
            images = [load_image(item.image, keep_depth=True) for item in items]
            parts[part] = (
                conversations(processor, protocol, images, rubric_seed=seed if args.random_rubric else None),
                torch.tensor([item.mos for item in items]),
                np.array([subsets[item.image.resolve()] for item in items]),
            )
    (train, train_mos, _), (test, test_mos, test_subsets) = parts["train"], parts["held_out"]
    digits = [1, 2, 3, 4, 5]
    targets = digit_targets(train_mos, (1.0, 5.0), digits)
    pool = [(path, i) for path in REPLIES for i in range(len(train_mos))]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    order_rng = np.random.default_rng(0)
    for _ in range(args.epochs):
        order = order_rng.permutation(len(pool))
        for start in range(0, len(pool), 32):
            chosen = [pool[j] for j in order[start : start + 32]]
            loss, n, _ = score_cross_entropy(
                model, [train[p][i] for p, i in chosen], targets[[i for _, i in chosen]], processor, digits, 1.0
            )
            optimizer.zero_grad()
            (loss / n).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    model.eval()
    context = ReadoutContext(model, processor)
    predicted = {path: np.array(expected_scores([[t] for t in test[path]], context)) for path in REPLIES}
    mos = test_mos.numpy()
    rubric = "random rubric levels" if args.random_rubric else "a fixed rubric"
    dark = f"{config.exposure_bits}-bit dark files" + (
        f", dark_gain {config.dark_gain}" if config.exposure_bits == 8 else ""
    )
    print(f"held-out SRCC of the probability-weighted score ({dark}, {args.epochs} epoch(s), {rubric}):")
    print(f"  {'subset':16s} {'original view':>14s} {'right tool':>11s}")
    for subset, right in RIGHT.items():
        mask = test_subsets == subset
        original = spearmanr(predicted["original"][mask], mos[mask])[0]
        print(f"  {subset:16s} {original:14.3f} {spearmanr(predicted[right][mask], mos[mask])[0]:11.3f}  ({right})")
    oracle = np.array([predicted[RIGHT[s]][i] for i, s in enumerate(test_subsets)])
    print(f"  all, one scale: original view {spearmanr(predicted['original'], mos)[0]:.3f}, "
          f"right view per subset {spearmanr(oracle, mos)[0]:.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
