"""Trajectories/s of the full Tool-IQA protocol with the ``hf`` engine, and where the time goes.

Every trajectory walks the whole protocol — rubric note, magnifier call, gamma call, forced final answer (two tool
views, four turns) — because the model is random: its turns are forced with :class:`ForcedTurns`, which keeps the
model's real forward passes and logprobs, and makes every trajectory produce the same number of tokens (default
150 + 60 + 60 + 80 = 350, the paper's Tool-IQA average of 350.51 output tokens, Table 8).

    uv run python benchmarks/agent_bench.py                      # tiny model, CPU (BENCHMARKS.md "## agent")
    python3 benchmarks/agent_bench.py --qwen3vl-8b-shapes --device cuda --batch 48   # GPU box (SPEC §9 shapes)

The 8B mode builds Qwen3-VL-8B's shapes with random bf16 weights on the GPU (no download) and, in the same run,
measures the anchor of SPEC §9: plain ``generate``, batch 48, one 448×448 image each, 350 new tokens.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
for package in ("agent", "tools"):  # runnable without an install (the GPU box has no venv of ours)
    sys.path.insert(0, str(ROOT / "packages" / package / "src"))

from tooliqa_agent import Agent, GenerationRequest, ProtocolConfig, SamplingConfig  # noqa: E402
from tooliqa_agent.engines.hf import HFEngine  # noqa: E402
from tooliqa_agent.forcing import ForcedTurns  # noqa: E402
from tooliqa_agent.tiny_model import TinyModelConfig, build_processor, build_tiny_qwen3vl, build_tokenizer  # noqa: E402

_WORDS = "sharp detail noise grain edge texture region exposure color contrast subject blur block ring".split()


def turn_text(tokenizer, head: str, tail: str, n_tokens: int) -> str:
    """``head`` + filler words + ``tail`` with exactly ``n_tokens`` tokens including the closing <|im_end|>."""
    words: list[str] = []
    while True:
        text = f"{head}{' '.join(words)}{tail}"
        count = len(tokenizer.encode(text, add_special_tokens=False)) + 1
        if count >= n_tokens:
            return text
        words.append(_WORDS[len(words) % len(_WORDS)])


def scripts(tokenizer, n_trajectories: int, budget: list[int]) -> dict[tuple[int, int], str]:
    """Rubric → magnifier → gamma → final answer, with ``budget`` tokens per turn, for every trajectory."""
    rubric = "\n<answer>\nSharpness: High - a\nNoise: None - b\nArtifacts: Minor - c\nExposure: Good - d\n"
    rubric += "Saliency Visibility: Subject Clear - e\n</answer>"
    magnifier = '</thinking>\n<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [100, 100, 600, 600]}}\n'
    gamma = '</thinking>\n<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n'
    turns = [
        turn_text(tokenizer, "<thinking>", "</thinking>" + rubric, budget[0]),
        turn_text(tokenizer, "<thinking>", magnifier + "</tool_call>", budget[1]),
        turn_text(tokenizer, "<thinking>", gamma + "</tool_call>", budget[2]),
        turn_text(tokenizer, "<thinking>", "</thinking> <answer>3.42</answer>", budget[3]),
    ]
    return {(t, k): text for t in range(n_trajectories) for k, text in enumerate(turns)}


def qwen3vl_8b(tokenizer, device: torch.device, text_layers: int, vision_depth: int, dtype: torch.dtype):
    """Qwen3-VL-8B shapes (SPEC §9), random bf16 weights, token ids of our tokenizer (its ids fit the vocab)."""
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>")}
    config = transformers.Qwen3VLConfig(
        text_config=dict(
            vocab_size=151936,
            hidden_size=4096,
            intermediate_size=12288,
            num_hidden_layers=text_layers,
            num_attention_heads=32,
            num_key_value_heads=8,
            head_dim=128,
            max_position_embeddings=262144,
            rms_norm_eps=1e-6,
            tie_word_embeddings=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": [24, 20, 20],
                "mrope_interleaved": True,
            },
        ),
        vision_config=dict(
            depth=vision_depth,
            hidden_size=1152,
            intermediate_size=4304,
            num_heads=16,
            patch_size=16,
            temporal_patch_size=2,
            spatial_merge_size=2,
            out_hidden_size=4096,
            num_position_embeddings=2304,
            deepstack_visual_indexes=[i for i in (8, 16, 24) if i < vision_depth] or [0],
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=tokenizer.convert_tokens_to_ids("<|vision_end|>"),
        tie_word_embeddings=False,
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = transformers.Qwen3VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(default)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def load(args):
    """(processor, model, image side) for the chosen mode."""
    import transformers

    device = torch.device(args.device)
    if args.qwen3vl_8b_shapes:
        # real Qwen3-VL pixel bounds (shortest_edge 65536, longest_edge 16777216), tiny tokenizer: ids < 151936
        kit = TinyModelConfig(min_pixels=65536, max_pixels=16777216)
        tokenizer = build_tokenizer(kit)
        processor = build_processor(kit, tokenizer)
        return (
            processor,
            qwen3vl_8b(tokenizer, device, args.text_layers, args.vision_depth, getattr(torch, args.dtype)),
            448,
        )
    out = build_tiny_qwen3vl(Path(tempfile.mkdtemp(prefix="tiny-qwen3vl-")))
    processor = transformers.AutoProcessor.from_pretrained(out)
    model = transformers.AutoModelForImageTextToText.from_pretrained(out, dtype=torch.float32).to(device).eval()
    return processor, model, 128


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def anchor(engine: HFEngine, agent: Agent, images, new_tokens: int, device) -> float:
    """Plain ``generate`` of ``new_tokens`` for every first prompt (one image each), no protocol: seconds."""
    requests = [
        GenerationRequest(tuple(agent.chat.expand(agent._first, [im])), (im,))
        for im in images  # noqa: SLF001
    ]
    inputs = engine._batch(requests)  # noqa: SLF001 (the engine's own batching: same inputs as the protocol)
    sync(device)
    tick = time.perf_counter()
    torch.manual_seed(0)
    engine.model.generate(
        **inputs,
        do_sample=True,
        temperature=0.9,
        top_k=None,
        top_p=None,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        pad_token_id=engine.pad_id,
    )
    sync(device)
    return time.perf_counter() - tick


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--qwen3vl-8b-shapes", action="store_true", help="random Qwen3-VL-8B shapes in bf16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16, help="trajectories per rollout (images × group)")
    parser.add_argument("--group", type=int, default=4, help="trajectories per image (G)")
    parser.add_argument("--turn-tokens", default="150,60,60,80", help="tokens of rubric, tool, tool, final turns")
    parser.add_argument("--anchor-tokens", type=int, default=350, help="new tokens of the plain-generate anchor")
    parser.add_argument("--repeats", type=int, default=2, help="timed rollouts (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="CPU torch threads (the tiny model is overhead-bound)")
    parser.add_argument("--text-layers", type=int, default=36, help=argparse.SUPPRESS)  # smoke tests only
    parser.add_argument("--vision-depth", type=int, default=27, help=argparse.SUPPRESS)
    parser.add_argument("--dtype", default="bfloat16", help=argparse.SUPPRESS)  # float32 for CPU smoke tests
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    budget = [int(x) for x in args.turn_tokens.split(",")]
    if len(budget) != 4 or args.batch % args.group:
        raise SystemExit("--turn-tokens needs 4 numbers and --batch must be a multiple of --group")

    build = time.perf_counter()
    processor, model, side = load(args)
    build_s = time.perf_counter() - build
    print(
        f"built {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B parameters) "
        f"in {build_s:.1f} s",
        flush=True,
    )
    texts = scripts(processor.tokenizer, args.batch, budget)
    engine = HFEngine(model, processor, constraint_factory=ForcedTurns(processor.tokenizer, texts))
    agent = Agent(engine, processor, ProtocolConfig())
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, side, side), dtype=torch.uint8, generator=generator) for _ in range(args.batch)]
    sampling = SamplingConfig(temperature=0.9, max_new_tokens=max(budget) + 8)

    calls: list[tuple[int, float]] = []
    generate = engine.generate

    def timed_generate(requests, sampling_config):
        sync(device)
        tick = time.perf_counter()
        out = generate(requests, sampling_config)
        sync(device)
        calls.append((len(requests), time.perf_counter() - tick))
        return out

    engine.generate = timed_generate
    tool_runs: list[float] = []
    run_tools = agent.toolkit.run

    def timed_tools(originals, tool_calls):
        sync(device)
        tick = time.perf_counter()
        out = run_tools(originals, tool_calls)
        sync(device)
        tool_runs.append(time.perf_counter() - tick)
        return out

    agent.toolkit.run = timed_tools
    n_images = args.batch // args.group
    agent.rollout(images[: max(1, n_images // 4)], args.group, sampling)  # warm-up (kernels, allocator)
    print("warm-up done", flush=True)
    runs = []
    for _ in range(args.repeats):
        calls.clear()
        tool_runs.clear()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(device)
        tick = time.perf_counter()
        trajectories = [t for row in agent.rollout(images[:n_images], args.group, sampling) for t in row]
        sync(device)
        total = time.perf_counter() - tick
        generation = sum(seconds for _, seconds in calls)
        tools = sum(tool_runs)
        runs.append(
            dict(
                total_s=total,
                generation_s=generation,
                per_turn_generate_s=[round(seconds, 3) for _, seconds in calls],
                tools_s=tools,
                other_s=total - generation - tools,
                trajectories=len(trajectories),
                output_tokens=sum(t.num_output_tokens for t in trajectories) / len(trajectories),
                sequence_tokens=sum(len(t.input_ids) for t in trajectories) / len(trajectories),
                tool_calls=sum(t.num_successful_calls for t in trajectories) / len(trajectories),
                scored=sum(t.score is not None for t in trajectories),
                peak_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
            )
        )
    best = min(runs, key=lambda r: r["total_s"])
    anchor_s = anchor(engine, agent, images[: args.batch], args.anchor_tokens, device)
    result = dict(
        mode="qwen3vl-8b-shapes" if args.qwen3vl_8b_shapes else "tiny",
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({args.threads} threads)",
        torch=torch.__version__,
        batch=args.batch,
        group=args.group,
        turn_tokens=budget,
        build_s=build_s,
        trajectories_per_s=best["trajectories"] / best["total_s"],
        generation_share=best["generation_s"] / best["total_s"],
        best=best,
        runs=runs,
        anchor_s=anchor_s,
        anchor_trajectories_per_s=args.batch / anchor_s,
        protocol_over_anchor=best["total_s"] / anchor_s,
    )
    print(json.dumps(result, indent=2))
    print(
        f"\n{result['mode']} on {result['device']}: {result['trajectories_per_s']:.3f} trajectories/s "
        f"({best['trajectories']} in {best['total_s']:.2f} s; {best['output_tokens']:.0f} output tokens, "
        f"{best['tool_calls']:.0f} tool views each); generation {100 * result['generation_share']:.1f} %, "
        f"tools {best['tools_s']:.3f} s, everything else {best['other_s']:.2f} s; anchor (plain generate, batch {args.batch}, "
        f"{args.anchor_tokens} new tokens) {anchor_s:.2f} s → protocol/anchor {result['protocol_over_anchor']:.2f}×"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
