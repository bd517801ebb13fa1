"""One GRPO/GSPO training step of a Qwen3-VL-8B-shaped policy on one GPU, through Lightning, and where the time goes.

48 trajectories (12 images × G 4, one 448×448 image each) of ~798 tokens come from the scripted engine (a random
model cannot follow the protocol; the scripted reply is sized so prompt + reply ≈ ``--tokens``), then the real
``GRPOModule`` step runs: rewards → advantages → reference log-probs (LoRA adapters disabled) → GSPO + β·KL
forward/backward in micro-batches of 4 with gradient checkpointing → optimizer step. Step 1 warms up; the JSON line
reports the last step. Weights are random bf16, built from a config on the GPU (SPEC §9 shapes; no download).

    python benchmarks/trainer_gpu_step.py --strategy deepspeed     # LoRA r=64 q,k,v,o + DeepSpeed ZeRO-2 (the check)
    python benchmarks/trainer_gpu_step.py --strategy auto          # same without DeepSpeed (fallback)
    python benchmarks/trainer_gpu_step.py --zero-stage 3 --steps 1 # ZeRO-3: partitioned loading, reference, gathers
    uv run python benchmarks/trainer_gpu_step.py --shape tiny --device cpu --trajectories 8   # CPU smoke run

Anchor (SPEC §9, H200): LoRA r=64 forward+backward over 48 × 798 tokens, micro-batch 4, gradient checkpointing: 8.8 s,
25 GB peak. Compare it with ``update_s`` (the loss forward+backward+step; ``ref_logprobs_s`` is the extra KL forward).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for package in ("trainer", "agent", "tools", "rewards", "data"):  # runnable without an install (GPU box: no venv)
    sys.path.insert(0, str(ROOT / "packages" / package / "src"))

import lightning as L  # noqa: E402
import torch  # noqa: E402

from tooliqa_agent.engines.scripted import ScriptedEngine  # noqa: E402
from tooliqa_agent.prompts import PromptConfig  # noqa: E402
from tooliqa_agent.protocol import ProtocolConfig  # noqa: E402
from tooliqa_agent.tiny_model import TinyModelConfig, build_model_config, build_processor, build_tokenizer  # noqa: E402
from tooliqa_agent.types import EngineConfig, SamplingConfig  # noqa: E402
from tooliqa_data import make_synthetic_set  # noqa: E402
from tooliqa_trainer import (  # noqa: E402
    DatasetSpec,
    GRPOConfig,
    GRPOModule,
    IQADataModule,
    LoraConfig,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
)

_WORDS = "sharp detail noise grain edge texture region exposure color contrast subject blur block ring".split()


def qwen3vl_8b_config(tokenizer):
    """SPEC §9: Qwen3-VL-8B's shapes, with the token ids of our tokenizer (ids < its vocab of 151,936)."""
    import transformers

    small = build_model_config(TinyModelConfig(), tokenizer)
    text = dict(
        vocab_size=151936, hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=32768, rms_norm_eps=1e-6, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 5_000_000.0, "mrope_section": [24, 20, 20],
                         "mrope_interleaved": True},
    )  # fmt: skip
    vision = dict(
        depth=27, hidden_size=1152, intermediate_size=4304, num_heads=16, in_channels=3, patch_size=16,
        temporal_patch_size=2, spatial_merge_size=2, out_hidden_size=4096, num_position_embeddings=2304,
        deepstack_visual_indexes=[8, 16, 24],
    )  # fmt: skip
    return transformers.Qwen3VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=small.image_token_id,
        video_token_id=small.video_token_id,
        vision_start_token_id=small.vision_start_token_id,
        vision_end_token_id=small.vision_end_token_id,
        tie_word_embeddings=False,
    )


def write_checkpoint_dir(out: Path, shape: str, side: int) -> Path:
    """config.json (no weights: ``PolicyConfig.random_init``) + the tiny kit's processor sized for ``side``² images."""
    kit = TinyModelConfig(max_pixels=max(side * side, 128 * 128))
    tokenizer = build_tokenizer(kit)
    config = qwen3vl_8b_config(tokenizer) if shape == "8b" else build_model_config(kit, tokenizer)
    config.save_pretrained(out)
    build_processor(kit, tokenizer).save_pretrained(out)
    return out


def reply_text(tokenizer, n_tokens: int) -> str:
    """A final-answer template with ``n_tokens`` tokens (closing <|im_end|> included): thinking filler, then a
    ``{score}`` slot for a ``d.dd`` score (digits are single tokens, so every score gives the same length)."""
    words: list[str] = []
    while True:
        text = f"<thinking>{' '.join(words)}</thinking> <answer>{{score}}</answer>"
        if len(tokenizer.encode(text.format(score="3.42"), add_special_tokens=False)) + 1 >= n_tokens:
            return text
        words.append(_WORDS[len(words) % len(_WORDS)])


class BenchModule(GRPOModule):
    """GRPOModule with scripted rollouts of a fixed length; records each step's time split and loss stats."""

    reply: str = ""
    steps: list[dict] = []

    def build_engine(self):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # Scores differ inside each group, so rewards and advantages are non-zero and the gradient is real.
        return ScriptedEngine(
            self.processor, lambda r: self.reply.format(score=f"{1.25 + r.trajectory % 4:.2f}"), device=device
        )

    def training_step(self, batch, batch_idx):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        super().training_step(batch, batch_idx)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.steps[-1]["step_s"] = time.perf_counter() - start
        if torch.cuda.is_available():
            self.steps[-1]["peak_mem_gb"] = torch.cuda.max_memory_allocated() / 2**30

    def log_step(self, trajectories, rewards, loss, timer):
        lengths = [len(t.input_ids) for t in trajectories]
        self.steps.append(
            {
                **{f"{name}_s": round(seconds, 3) for name, seconds in timer.seconds.items()},
                "trajectories": len(trajectories),
                "mean_tokens": sum(lengths) / len(lengths),
                "total_tokens": sum(lengths),
                "kl": loss.kl,
                "loss": loss.loss,
            }
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", choices=("deepspeed", "auto"), default="deepspeed")
    parser.add_argument("--zero-stage", type=int, choices=(2, 3), default=2, help="DeepSpeed ZeRO stage")
    parser.add_argument("--shape", choices=("8b", "tiny"), default="8b")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--trajectories", type=int, default=48)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=798, help="target tokens per trajectory (prompt + reply)")
    parser.add_argument("--image-side", type=int, default=448)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--lora-r", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps; the last one is reported")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: no CUDA device here (use --device cpu --shape tiny for a smoke run)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    work = Path(tempfile.mkdtemp(prefix="trainer_gpu_step_"))
    ckpt = write_checkpoint_dir(work / "model", args.shape, args.image_side)
    images = args.trajectories // args.group_size
    make_synthetic_set(work / "images", 1, 0, size=(args.image_side,), distortions=("blur",), name="bench")

    protocol = ProtocolConfig(tools="none", rubric=False, prompts=PromptConfig())
    cuda = args.device == "cuda"
    module = BenchModule(
        policy=PolicyConfig(
            path=str(ckpt),
            random_init=True,
            dtype="bfloat16" if cuda else "float32",
            lora=LoraConfig(r=args.lora_r, alpha=2 * args.lora_r),
            gradient_checkpointing=True,
        ),
        rollout=RolloutConfig(
            group_size=args.group_size,
            engine=EngineConfig(name="scripted"),
            sampling=SamplingConfig(temperature=0.9, max_new_tokens=2048),
            protocol=protocol,
        ),
        grpo=GRPOConfig(kl_schedule=((0, 0.04),), micro_batch_size=args.micro_batch),
        optim=OptimConfig(lr=2e-5, warmup_ratio=0.0),
    )
    # Size the reply: a first (untimed) rollout with an empty answer measures the prompt length.
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(ckpt)
    tokenizer = processor.tokenizer
    from tooliqa_agent import Agent

    probe = Agent(ScriptedEngine(processor, lambda r: "<answer>3</answer>"), processor, protocol)
    image = torch.randint(0, 256, (3, args.image_side, args.image_side), dtype=torch.uint8)
    prompt = probe.rollout([image], 1, SamplingConfig())[0][0].prompt_length
    BenchModule.reply = reply_text(tokenizer, max(8, args.tokens - prompt))

    if args.strategy == "deepspeed":
        from lightning.pytorch.strategies import DeepSpeedStrategy

        ds_config = {
            "zero_optimization": {"stage": args.zero_stage, "contiguous_gradients": True, "overlap_comm": True},
            "gradient_clipping": 1.0,
            "bf16": {"enabled": True},
            "train_micro_batch_size_per_gpu": 1,
        }
        strategy, precision = DeepSpeedStrategy(config=ds_config), "bf16-mixed"
    else:
        strategy, precision = "auto", ("bf16-true" if cuda else "32-true")
    data = IQADataModule(train=[DatasetSpec("csv", str(work / "images"))], batch_size=images, steps=args.steps)
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        strategy=strategy,
        precision=precision,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        default_root_dir=work,
    )
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    last = BenchModule.steps[-1]
    result = {
        "benchmark": "trainer_gpu_step",
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "strategy": args.strategy,
        "zero_stage": args.zero_stage if args.strategy == "deepspeed" else None,
        "shape": args.shape,
        # ZeRO-3 leaves placeholders: ds_numel is the full size
        "params_b": round(sum(getattr(p, "ds_numel", p.numel()) for p in module.policy.parameters()) / 1e9, 3),
        "trainable_m": round(
            sum(getattr(p, "ds_numel", p.numel()) for p in module.policy.parameters() if p.requires_grad) / 1e6, 2
        ),
        "prompt_tokens": prompt,
        "micro_batch": args.micro_batch,
        "lora_r": args.lora_r,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        **last,
        "update_tokens_per_s": round(last["total_tokens"] / last["update_s"], 1),
        "fit_wall_s": round(time.perf_counter() - start, 1),
        "anchor": {"lora_fwd_bwd_s": 8.8, "peak_gb": 25, "device": "H200"},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
