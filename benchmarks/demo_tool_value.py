"""What each action is worth to a demo policy: the held-out score along every forced path, per subset.

GRPO can only teach the demo's policy *when* to call a tool if the right tool makes the policy's own score better on
the images that need it. This measures that directly, without sampling: for each held-out image the policy's
probability-weighted score (``tooliqa_trainer.readout.expected_scores``) after a scripted conversation of the demo's
protocol — answering at once, after the Gamma Corrector's ``brighten``, after the Magnifier's centre box — and, per
subset, the SRCC and mean absolute error of each path against the MOS. Two policies of one demo run: the warm start's
(the checkpoint's ``warm_reference``, what GRPO starts from) and the final one. Then what each policy (and the random
kit it started from) does at its first gate, per subset: the share of sampled trajectories (``--samples`` per image,
the demo's protocol and sampling) that answer at once, call the Gamma Corrector, or call the Magnifier; and whether it
*could* tell the subsets apart there: a ridge classifier of the subset from the state the first gate's choice is
sampled from (final layer, after the rubric turn), trained on the demo's training split, held-out accuracy.

    python benchmarks/demo_tool_value.py --ckpt runs/demo/checkpoints/last.ckpt     # ≈ 1 min on 2 cores
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from demo_probe import ridge_accuracy
from demo_warm_probe import PROMPTS, REPLIES, RIGHT, conversations
from scipy.stats import spearmanr


def _policies(ckpt: Path, kit: Path):
    """``{"initial": kit, "warm start": model, "final": model}`` from one demo checkpoint (the kit's architecture,
    the checkpoint's weights)."""
    import transformers

    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    if "warm_reference" not in checkpoint:
        raise SystemExit(f"{ckpt}: no warm_reference in it (a run without model.warm_start, or before it ran)")
    final = {name.removeprefix("policy."): value for name, value in checkpoint["state_dict"].items()}
    out = {"initial": transformers.AutoModelForImageTextToText.from_pretrained(kit, dtype=torch.float32).eval()}
    for name, state in (("warm start", checkpoint["warm_reference"]), ("final", final)):
        model = transformers.AutoModelForImageTextToText.from_pretrained(kit, dtype=torch.float32)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SystemExit(f"{ckpt}: {name} weights do not fit {kit} (missing {missing[:3]}, extra {unexpected[:3]})")
        out[name] = model.eval()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, default=Path("runs/demo/checkpoints/last.ckpt"), help="a demo checkpoint")
    parser.add_argument("--kit", type=Path, default=Path("runs/tiny-qwen3vl-tools"), help="the demo's tiny kit")
    parser.add_argument("--samples", type=int, default=16, help="sampled trajectories per image for the gate rates")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import transformers

    from tooliqa_agent.grammar import GrammarConfig
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_data import load_image
    from tooliqa_data.hidden import HiddenEvidenceConfig, make_hidden_evidence_set, read_subsets
    from tooliqa_trainer.readout import ReadoutContext, expected_scores

    processor = transformers.AutoProcessor.from_pretrained(args.kit)
    grammar = GrammarConfig(max_thinking_chars=0, max_note_chars=0, max_gap_chars=0, score_decimals=0)
    protocol = ProtocolConfig(tools="both", rubric=True, grammar=grammar, prompts=PromptConfig(**PROMPTS))
    with tempfile.TemporaryDirectory() as work:
        items = make_hidden_evidence_set(Path(work), 4, 1, HiddenEvidenceConfig())  # the demo's held-out split
        subsets = read_subsets(Path(work) / "manifest.csv")
        images = [load_image(item.image, keep_depth=True) for item in items]
        paths = conversations(processor, protocol, images)
        subset = np.array([subsets[item.image.resolve()] for item in items])
        train = make_hidden_evidence_set(Path(work) / "train", 24, 0, HiddenEvidenceConfig())  # the demo's training
        train_subsets = read_subsets(Path(work) / "train" / "manifest.csv")
        train_images = [load_image(item.image, keep_depth=True) for item in train]
        train_answers = conversations(processor, protocol, train_images, ("original",))["original"]
        train_subset = [train_subsets[item.image.resolve()] for item in train]
    mos = np.array([item.mos for item in items])
    policies = _policies(args.ckpt, args.kit)
    gate = {name: gate_rates(model, processor, images, subset, args.samples) for name, model in policies.items()}
    readable = {
        name: gate_readability(model, processor, train_answers, train_subset, paths["original"], list(subset))
        for name, model in policies.items()
    }
    for name, model in policies.items():
        if name == "initial":
            continue
        context = ReadoutContext(model, processor)
        scores = {path: np.array(expected_scores([[t] for t in paths[path]], context)) for path in REPLIES}
        print(f"{name}: held-out SRCC / mean |score − MOS| of the probability-weighted score per forced path")
        print(f"  {'subset':16s}" + "".join(f"{path:>18s}" for path in REPLIES) + "   right tool")
        for part in RIGHT:
            mask = subset == part
            cells = [f"{spearmanr(scores[p][mask], mos[mask])[0]:8.3f} / {np.abs(scores[p][mask] - mos[mask]).mean():.2f}"
                     for p in REPLIES]  # fmt: skip
            print(f"  {part:16s}" + "".join(f"{cell:>18s}" for cell in cells) + f"   {RIGHT[part]}")
    print(f"first gate, share of {args.samples} sampled trajectories per image: answer / gamma_corrector / magnifier")
    for name, rates in gate.items():
        print(f"  {name:11s}" + "".join(f"  {part} {' / '.join(f'{r:.2f}' for r in rates[part])}" for part in RIGHT))
    print("the subset from the first gate's state (ridge, held-out accuracy): 3 subsets / exposure vs scale-hidden")
    for name, (three, hidden) in readable.items():
        print(f"  {name:11s}  {three:.2f} / {hidden:.2f}")


def gate_readability(model, processor, train, train_subset, test, test_subset) -> tuple[float, float]:
    """Held-out accuracy of a ridge classifier of the subset (all three; exposure- vs scale-hidden) from the final
    state just before the first gate's choice, in the answer-at-once conversations ``train`` / ``test``."""
    from tooliqa_agent.collate import collate

    choice = processor.tokenizer.convert_tokens_to_ids("<answer>")  # the gate's answer; the rubric's comes before

    def states(trajectories) -> np.ndarray:
        out = []
        for k in range(0, len(trajectories), 40):
            part = trajectories[k : k + 40]
            with torch.no_grad():
                hidden = model(**collate(part, processor).model_inputs(), output_hidden_states=True).hidden_states[-1]
            for row, t in enumerate(part):
                out.append(hidden[row, max(i for i, token in enumerate(t.input_ids) if token == choice) - 1].numpy())
        return np.stack(out)

    a, b = states(train), states(test)
    hidden_a = [i for i, s in enumerate(train_subset) if s != "plain"]
    hidden_b = [i for i, s in enumerate(test_subset) if s != "plain"]
    return (
        ridge_accuracy(a, train_subset, b, test_subset),
        ridge_accuracy(
            a[hidden_a], [train_subset[i] for i in hidden_a], b[hidden_b], [test_subset[i] for i in hidden_b]
        ),
    )


def gate_rates(model, processor, images, subset, samples: int) -> dict[str, tuple[float, float, float]]:
    """Per subset, the shares of trajectories whose first gate answers, calls the Gamma Corrector, the Magnifier,
    under the demo's protocol (``configs/demo.yaml``: structured, menu of boxes, integer scores) and sampling."""
    from tooliqa_agent import Agent
    from tooliqa_agent.engines import make_engine
    from tooliqa_agent.grammar import GrammarConfig
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_agent.types import EngineConfig, SamplingConfig

    boxes = ((0, 0, 500, 500), (500, 0, 1000, 500), (0, 500, 500, 1000), (500, 500, 1000, 1000), (250, 250, 750, 750))
    grammar = GrammarConfig(
        max_thinking_chars=0, max_note_chars=0, max_gap_chars=0, score_decimals=0, box_choices=boxes
    )
    protocol = ProtocolConfig(
        tools="both", rubric=True, structured=True, grammar=grammar, prompts=PromptConfig(**PROMPTS)
    )
    engine = make_engine(
        EngineConfig(name="hf", device="cpu", canonical_forced_text=True), model=model, processor=processor
    )
    agent = Agent(engine, processor, protocol)
    keys = [f"held_out/{i}" for i in range(len(images))]  # per-image seeds, as evaluation samples them
    first = []
    for start in range(0, len(images), 20):
        groups = agent.rollout(
            images[start : start + 20],
            samples,
            SamplingConfig(temperature=1.0, max_new_tokens=160),
            keys[start : start + 20],
        )
        for group in groups:
            calls = [next((turn.call.name for turn in t.turns if turn.call is not None), "answer") for t in group]
            first.append(calls)
    out = {}
    for part in RIGHT:
        chosen = [call for calls, s in zip(first, subset) if s == part for call in calls]
        out[part] = tuple(
            float(np.mean([c == kind for c in chosen])) for kind in ("answer", "gamma_corrector", "magnifier")
        )
    return out


if __name__ == "__main__":
    main()
