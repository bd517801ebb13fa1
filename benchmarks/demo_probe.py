"""Why the CPU demo is set up as it is: what the tiny random Qwen3-VL can see, and how GRPO behaves on it.

Two measurements on the demo's tiny kit (``configs/demo.yaml``'s ``model.policy.tiny``), on a synthetic set split by
reference (24 training / 4 held-out references × every distortion type × 5 levels):

1. **Probe** — a supervised ridge regression from the hidden state at the answer position (the state the score token
   is sampled from; prompt = the demo's question, reply prefix ``<thinking></thinking> <answer>``) to MOS, fitted on
   the training references and scored by held-out SRCC, per distortion type and for the demo's set. An upper bound
   for what a readout of these features can rank.
2. **Bandit** — GRPO in miniature on the same frozen features: a softmax over the five score digits, rank reward
   (``tooliqa_rewards.rank_reward``), group advantages, Adam, optional k3 KL to the initial readout. Features raw (as
   the policy sees them) or centred; held-out SRCC of the expected score and its spread.

3. **Hidden evidence** (``--set hidden``, the demo's set: ``tooliqa_data.hidden``) — per subset, the same ridge probe
   on the state after the ORIGINAL (global) view and after each tool's view, made exactly as the agent makes them
   (``Agent``'s pixel bounds, tools on the full-resolution original): the measure of whether a tool shows the model
   evidence its global view hides. Also how well the global view tells the subsets apart (held-out accuracy of a
   ridge one-vs-rest classifier), which is what a policy needs to call the right tool on the right image.

    python benchmarks/demo_probe.py                       # ≈ 1 min on 2 cores
    python benchmarks/demo_probe.py --size 128 --json out.json
    python benchmarks/demo_probe.py --set hidden          # the hidden-evidence table (BENCHMARKS.md)
    python benchmarks/demo_probe.py --set context         # image signal at the score under the full protocol

4. **Protocol context** (``--set context``) — the state the score is sampled from after the whole conversation the
   demo's protocol builds (system block with the tool schemas, rubric turn, gate, tool turns), made by the real
   ``Agent`` with scripted replies, on the demo's kit with and without ``protocol_phrases``: the context length, the
   image-dependent spread of that state (mean over dimensions of the across-image std) against its mean, and the
   ridge probe per subset. A random model attends almost uniformly, so every prompt token dilutes the 4 visual tokens.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

DEMO_TINY = dict(
    hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2, vision_depth=2,
    vision_hidden_size=64, vision_heads=4, min_pixels=1024, max_pixels=16384, seed=0,
)  # fmt: skip
QUESTION = "Rate the quality of this image from 1 (bad) to 5 (excellent)."
DEMO_SET = ("contrast", "darken", "brighten")


def answer_states(model_dir: Path, items, prefix: str) -> np.ndarray:
    """``[N, hidden]`` final-layer state at the last prompt position (where the score digit is sampled)."""
    import transformers
    from PIL import Image

    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    states = []
    for item in items:
        image = Image.open(item.image).convert("RGB")
        messages = [
            {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": QUESTION}]}
        ]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**inputs, output_hidden_states=True).hidden_states[-1]
        states.append(hidden[0, -1].numpy())
    return np.stack(states)


def view_states(model_dir: Path, views: list[torch.Tensor], prefix: str) -> np.ndarray:
    """``[N, hidden]`` answer-position state for pre-sized uint8 ``[3, h, w]`` views (same prompt as above)."""
    import transformers
    from PIL import Image

    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + prefix
    states = []
    for view in views:
        image = Image.fromarray(view.permute(1, 2, 0).contiguous().numpy())
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            states.append(model(**inputs, output_hidden_states=True).hidden_states[-1][0, -1].numpy())
    return np.stack(states)


def ridge_srcc(train_x, train_y, test_x, test_y, penalties=(0.1, 1.0, 10.0, 100.0, 1000.0)) -> float:
    """Best held-out SRCC of ridge fits on standardised features (the penalty is the only choice made on test)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    best = -1.0
    for penalty in penalties:
        w = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ (train_y - train_y.mean()))
        best = max(best, float(spearmanr(b @ w, test_y)[0]))
    return best


def bandit(train_x, train_y, test_x, test_y, *, centred, beta, lr, steps, batch=8, group=8, seed=0) -> dict:
    """GRPO on a linear softmax readout of frozen features; held-out SRCC / spread of the expected score."""
    from tooliqa_rewards import rank_reward

    torch.manual_seed(seed)
    x_train, x_test = torch.tensor(train_x), torch.tensor(test_x)
    if centred:
        mean = x_train.mean(0)
        x_train, x_test = x_train - mean, x_test - mean
    y_train = torch.tensor(train_y, dtype=torch.float32)
    readout = torch.nn.Linear(x_train.shape[1], 5)
    torch.nn.init.normal_(readout.weight, std=0.02)
    torch.nn.init.zeros_(readout.bias)
    initial = copy.deepcopy(readout).requires_grad_(False)
    optimizer = torch.optim.Adam(readout.parameters(), lr=lr)
    for _ in range(steps):
        rows = torch.randint(len(x_train), (batch,))
        logits = readout(x_train[rows])
        samples = torch.distributions.Categorical(logits=logits).sample((group,)).T  # [B, G] digit index
        rewards = rank_reward((samples + 1).float(), y_train[rows], torch.ones(batch, group, dtype=torch.bool))
        advantages = (rewards - rewards.mean(1, keepdim=True)) / (rewards.std(1, keepdim=True) + 1e-4)
        logprobs = logits.log_softmax(-1).gather(1, samples)
        loss = -(advantages * logprobs).mean()
        if beta > 0:
            delta = initial(x_train[rows]).log_softmax(-1).gather(1, samples) - logprobs
            loss = loss + beta * (delta.exp() - delta - 1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        expected = (readout(x_test).softmax(-1) * torch.arange(1, 6)).sum(-1)
    spread = float(expected.std())
    return {"srcc": float(spearmanr(expected, test_y)[0]) if spread > 0 else 0.0, "expected_std": spread}


def ridge_accuracy(train_x, train_labels, test_x, test_labels, penalty=10.0) -> float:
    """Held-out accuracy of a one-vs-rest ridge classifier on standardised features."""
    classes = sorted(set(train_labels))
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    a, b = (train_x - mean) / std, (test_x - mean) / std
    targets = np.array([[1.0 if label == c else -1.0 for c in classes] for label in train_labels])
    w = np.linalg.solve(a.T @ a + penalty * np.eye(a.shape[1]), a.T @ targets)
    predicted = [classes[k] for k in (b @ w).argmax(1)]
    return float(np.mean([p == t for p, t in zip(predicted, test_labels)]))


HIDDEN_VIEWS = {
    "original": None,
    "gamma brighten": {"mode": "brighten"},
    "magnifier centre half": {"bbox_2d": [250, 250, 750, 750]},
    "magnifier random box": "random",
}


def _hidden_config(args):
    """The hidden-evidence set's config from the command line."""
    from tooliqa_data.hidden import HiddenEvidenceConfig

    return HiddenEvidenceConfig(view_side=args.view_side, dark_gain=args.dark_gain, exposure_bits=args.exposure_bits)


def hidden_evidence(args) -> dict:
    """Probe SRCC per subset × view on the hidden-evidence set, and subset separability from the global view."""
    import json as _json

    from tooliqa_agent import Agent
    from tooliqa_agent.engines.scripted import ScriptedEngine
    from tooliqa_agent.tiny_model import TinyModelConfig, build_tiny_qwen3vl
    from tooliqa_data import load_image
    from tooliqa_data.hidden import SUBSETS, make_hidden_evidence_set, read_subsets
    from tooliqa_tools import ToolCall

    tiny = dict(DEMO_TINY, max_pixels=args.max_pixels)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model_dir = build_tiny_qwen3vl(work / "tiny", TinyModelConfig(**tiny))
        import transformers

        processor = transformers.AutoProcessor.from_pretrained(model_dir)
        agent = Agent(ScriptedEngine(processor, []), processor)  # only its view planning: the agent's bounds
        parts = {}
        for part, refs, seed in (("train", args.train_references, 0), ("test", args.held_out_references, 1)):
            items = make_hidden_evidence_set(work / part, refs, seed, _hidden_config(args))
            subsets = read_subsets(work / part / "manifest.csv")
            originals = [load_image(item.image, keep_depth=True) for item in items]
            views = {}
            for view_name, arguments in HIDDEN_VIEWS.items():
                if arguments is None:
                    views[view_name] = [agent.prepare_image(o) for o in originals]
                    continue
                calls = []
                for _ in originals:
                    if arguments == "random":
                        x1, y1 = rng.integers(0, 700, size=2)
                        w = rng.integers(150, 1000 - max(x1, y1) + 1)
                        box = {"bbox_2d": [int(x1), int(y1), int(x1 + w), int(y1 + w)]}
                        calls.append(ToolCall("magnifier", _json.dumps(box)))
                    else:
                        name = "gamma_corrector" if "mode" in arguments else "magnifier"
                        calls.append(ToolCall(name, _json.dumps(arguments, sort_keys=True)))
                views[view_name] = [v.image.contiguous() for v in agent.toolkit.run(originals, calls)]
            prefix = "<thinking></thinking> <answer>"
            states = {name: view_states(model_dir, vs, prefix) for name, vs in views.items()}
            labels = [subsets[item.image.resolve()] for item in items]
            kinds = [item.image.stem.split("_", 1)[1].rsplit("_", 1)[0] for item in items]
            parts[part] = (states, np.array([item.mos for item in items]), np.array(labels), np.array(kinds))
    (train_states, train_y, train_s, train_k), (test_states, test_y, test_s, test_k) = parts["train"], parts["test"]
    table = {}
    groups = [(subset, train_s == subset, test_s == subset) for subset in SUBSETS]
    groups += [(f"  {kind}", train_k == kind, test_k == kind) for kind in sorted(set(train_k))]
    for subset, a, b in groups:
        table[subset] = {
            view: ridge_srcc(train_states[view][a], train_y[a], test_states[view][b], test_y[b])
            for view in HIDDEN_VIEWS
        }
    separability = ridge_accuracy(train_states["original"], list(train_s), test_states["original"], list(test_s))
    return {
        "probe": table,
        "subset_accuracy_from_global_view": separability,
        "max_pixels": args.max_pixels,
        "dark_gain": args.dark_gain,
        "exposure_bits": args.exposure_bits,
    }


CONTEXT_REPLIES = {
    "rubric": "<thinking></thinking><answer>\nSharpness: High\nNoise: None\nArtifacts: Minor\nExposure: Poor\n"
    "Saliency Visibility: Subject Clear\n</answer>",
    "gamma": '<thinking></thinking><tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>',
    "magnifier": '<thinking></thinking><tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [250, 250, 750, 750]}}'
    "\n</tool_call>",
    "answer": "<thinking></thinking><answer>3</answer>",
}
CONTEXT_PATHS = {
    "single-turn (VisualQuality-R1)": (False, "none", ("answer",)),
    "protocol, direct answer": (True, "both", ("rubric", "answer")),
    "protocol, gamma, answer": (True, "both", ("rubric", "gamma", "answer")),
    "protocol, magnifier, answer": (True, "both", ("rubric", "magnifier", "answer")),
}
DEMO_PROMPTS = dict(
    rubric="Assess Sharpness, Noise, Artifacts, Exposure and Saliency Visibility.",
    gate="Answer with a score, or call one tool.",
    single_turn=QUESTION,
)


def score_states(model_dir: Path, rubric: bool, tools: str, turns, originals) -> tuple[np.ndarray, float]:
    """``[N, hidden]`` final-layer state just before the score digit of the scripted conversation, and its mean
    length in tokens; the conversation is built by the real ``Agent`` under the demo's prompts and grammar."""
    import transformers

    from tooliqa_agent import Agent
    from tooliqa_agent.collate import collate
    from tooliqa_agent.engines.scripted import ScriptedEngine
    from tooliqa_agent.grammar import GrammarConfig
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_agent.types import SamplingConfig

    processor = transformers.AutoProcessor.from_pretrained(model_dir)
    model = transformers.AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    grammar = GrammarConfig(max_thinking_chars=0, max_note_chars=0, score_decimals=0, max_gap_chars=0)
    protocol = ProtocolConfig(tools=tools, rubric=rubric, grammar=grammar, prompts=PromptConfig(**DEMO_PROMPTS))
    agent = Agent(ScriptedEngine(processor, lambda request: CONTEXT_REPLIES[turns[request.turn]]), processor, protocol)
    digit = processor.tokenizer.convert_tokens_to_ids("3")
    states, lengths = [], []
    for start in range(0, len(originals), 20):
        groups = agent.rollout(originals[start : start + 20], 1, SamplingConfig(max_new_tokens=200))
        trajectories = [group[0] for group in groups]
        with torch.no_grad():
            hidden = model(**collate(trajectories, processor).model_inputs(), output_hidden_states=True)
        for row, t in enumerate(trajectories):
            position = max(i for i in range(len(t.input_ids)) if t.loss_mask[i] and t.input_ids[i] == digit)
            states.append(hidden.hidden_states[-1][row, position - 1].numpy())
            lengths.append(len(t.input_ids))
    return np.stack(states), float(np.mean(lengths))


def protocol_context(args) -> dict:
    """Per kit (phrases off/on) × conversation path: tokens, image-dependent spread, ridge probe per subset."""
    from tooliqa_agent.tiny_model import TinyModelConfig, build_tiny_qwen3vl
    from tooliqa_data import load_image
    from tooliqa_data.hidden import SUBSETS, make_hidden_evidence_set, read_subsets

    tiny = dict(DEMO_TINY, max_pixels=args.max_pixels, bpe_vocab_size=2000, protocol_vocabulary=True)
    boxes = ("[0, 0, 500, 500]", "[500, 0, 1000, 500]", "[0, 500, 500, 1000]", "[500, 500, 1000, 1000]")
    phrases = (DEMO_PROMPTS["rubric"], DEMO_PROMPTS["gate"], *boxes, "[250, 250, 750, 750]")  # the demo's
    right_path = {"plain": "protocol, direct answer", "exposure_hidden": "protocol, gamma, answer"}
    right_path["scale_hidden"] = "protocol, magnifier, answer"
    table = {}
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        parts = {}
        for part, refs, seed in (("train", args.train_references, 0), ("test", args.held_out_references, 1)):
            items = make_hidden_evidence_set(work / part, refs, seed, _hidden_config(args))
            subsets = read_subsets(work / part / "manifest.csv")
            parts[part] = (
                [load_image(item.image, keep_depth=True) for item in items],
                np.array([item.mos for item in items]),
                np.array([subsets[item.image.resolve()] for item in items]),
            )
        for kit_name, extra in (
            ("kit", {}),
            ("kit + protocol_phrases", {"protocol_phrases": True, "phrases": phrases}),
        ):
            model_dir = build_tiny_qwen3vl(work / kit_name.replace(" ", ""), TinyModelConfig(**tiny, **extra))
            (_, train_y, train_s), (_, test_y, test_s) = parts["train"], parts["test"]
            states = {}
            for path, (rubric, tools, turns) in CONTEXT_PATHS.items():
                (train_x, length), (test_x, _) = (
                    score_states(model_dir, rubric, tools, turns, parts[p][0]) for p in ("train", "test")
                )
                states[path] = train_x, test_x
                row = {
                    "tokens": length,
                    "spread": float(train_x.std(0).mean()),
                    "mean": float(np.abs(train_x.mean(0)).mean()),
                }
                for subset in SUBSETS:
                    a, b = train_s == subset, test_s == subset
                    row[subset] = ridge_srcc(train_x[a], train_y[a], test_x[b], test_y[b])
                row["all (one scale)"] = ridge_srcc(train_x, train_y, test_x, test_y)
                table[f"{kit_name}: {path}"] = row
            # each image seen through its subset's right view, read on ONE scale: the ceiling of a linear readout
            # for the whole held-out SRCC, which the demo's target is
            pick = [
                np.stack([states[right_path[s]][k][i] for i, s in enumerate(subsets)])
                for k, subsets in enumerate((train_s, test_s))
            ]
            table[f"{kit_name}: right view per subset"] = {
                "all (one scale)": ridge_srcc(pick[0], train_y, pick[1], test_y)
            }
    return {"context": table, "max_pixels": args.max_pixels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--set", choices=("distortions", "hidden", "context"), default="distortions", help="which study"
    )
    parser.add_argument("--size", type=int, default=64, help="image side (the demo: 64)")
    parser.add_argument("--steps", type=int, default=150, help="bandit steps")
    parser.add_argument("--view_side", type=int, default=128, help="hidden/context: the model's view side (the set's)")
    parser.add_argument("--max_pixels", type=int, help="hidden/context: the kit's pixel budget (default view_side²)")
    parser.add_argument("--train_references", type=int, default=24, help="hidden: training references")
    parser.add_argument("--held_out_references", type=int, default=8, help="hidden: held-out references")
    parser.add_argument("--dark_gain", type=float, default=0.06, help="hidden: exposure-hidden gain (the set's)")
    parser.add_argument("--exposure_bits", type=int, default=16, help="hidden: exposure-hidden files, 8 or 16 bits")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.max_pixels = args.max_pixels or args.view_side**2
    if args.set == "context":
        result = protocol_context(args)
        print("image signal at the score position (state before the digit), hidden-evidence set:")
        for name, row in result["context"].items():
            print(
                f"  {name:58s} "
                + "  ".join(f"{k} {v:.3f}" if k != "tokens" else f"tokens {v:.0f}" for k, v in row.items())
            )
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    if args.set == "hidden":
        result = hidden_evidence(args)
        views = list(HIDDEN_VIEWS)
        print(f"hidden-evidence probe, held-out SRCC per subset (kit max_pixels {args.max_pixels}):")
        print(f"  {'subset':16s}" + "".join(f"{v:>24s}" for v in views))
        for subset, row in result["probe"].items():
            print(f"  {subset:16s}" + "".join(f"{row[v]:24.3f}" for v in views))
        print(f"subset accuracy from the global view: {result['subset_accuracy_from_global_view']:.3f}")
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return

    from tooliqa_agent.tiny_model import TinyModelConfig, build_tiny_qwen3vl
    from tooliqa_data import make_synthetic_set
    from tooliqa_data.synthetic import DISTORTIONS

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        model_dir = build_tiny_qwen3vl(work / "tiny", TinyModelConfig(**DEMO_TINY))
        train = make_synthetic_set(work / "train", 24, 0, size=[args.size])
        test = make_synthetic_set(work / "test", 4, 1, size=[args.size])
        prefix = "<thinking></thinking> <answer>"
        train_x, test_x = answer_states(model_dir, train, prefix), answer_states(model_dir, test, prefix)
    kinds = [item.image.name.split("_", 1)[1].rsplit("_", 1)[0] for item in train]
    test_kinds = [item.image.name.split("_", 1)[1].rsplit("_", 1)[0] for item in test]
    train_y = np.array([item.mos for item in train])
    test_y = np.array([item.mos for item in test])

    def subset(names):
        a = np.array([k in names for k in kinds])
        b = np.array([k in names for k in test_kinds])
        return train_x[a], train_y[a], test_x[b], test_y[b]

    probe = {name: ridge_srcc(*subset({name})) for name in DISTORTIONS}
    probe["demo set"] = ridge_srcc(*subset(set(DEMO_SET)))
    probe["blur, darken, contrast, pixelate"] = ridge_srcc(*subset({"blur", "darken", "contrast", "pixelate"}))
    image_share = float(np.abs(train_x.mean(0)).mean()), float(train_x.std(0).mean())
    runs = {
        "raw, β 0": dict(centred=False, beta=0.0, lr=1e-2),
        "centred, β 0": dict(centred=True, beta=0.0, lr=1e-2),
        "raw, β 0.5": dict(centred=False, beta=0.5, lr=1e-2),
    }
    bandits = {name: bandit(*subset(set(DEMO_SET)), steps=args.steps, **options) for name, options in runs.items()}

    print(f"answer-position state: mean |per-dimension mean| {image_share[0]:.3f}, mean spread {image_share[1]:.3f}")
    print(f"ridge probe, held-out SRCC ({args.size} px):")
    for name, value in sorted(probe.items(), key=lambda kv: -kv[1]):
        print(f"  {name:36s} {value:6.3f}")
    print(f"bandit on the demo set, {args.steps} steps (held-out SRCC of the expected score / its std):")
    for name, result in bandits.items():
        print(f"  {name:14s} {result['srcc']:6.3f} / {result['expected_std']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "probe": probe, "bandit": bandits}, indent=2))


if __name__ == "__main__":
    main()
