"""One rank of a multi-rank CPU run, as a launcher starts it: ``python tests/distributed/worker.py SPEC.json`` with
torchrun's environment (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``, ...): Lightning
reads the ranks from there and spawns nothing. Without that environment it is one plain process (the one-rank
reference, which the tests run in the pytest process through :func:`main`).

Each entry of ``spec["runs"]`` is a real ``Trainer.fit`` of the tiny kit under one strategy (DDP, DeepSpeed ZeRO-2 or
ZeRO-3 over gloo) with a scripted engine whose replies depend only on the image, the sample and the turn (never on
the rank or the call), so one rank × B images and N ranks × B/N images must agree: a checkpoint after every step, a
CSV logger, the HF export and a held-out pass at the end, then optionally a second fit resumed from step
``resume_from``'s checkpoint. Each rank writes ``<name>/rank<r>.json`` (images per step, rewards, advantages,
engine counters, generator states, validation items and results) and ``<name>/weights_<phase>_step<k>_rank<r>.pt``; with
``spec["vllm"]`` also ``vllm<r>.json``, the vllm engine's per-rank settings.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path

import lightning as L
import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy

from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig
from tooliqa_trainer import (
    DatasetSpec,
    ExportHF,
    GRPOConfig,
    GRPOModule,
    IQADataModule,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    TorchThreads,
)
from tooliqa_trainer.policy import engine_weights

RUBRIC = (
    "<thinking></thinking>\n<answer>\nSharpness: High - a\nNoise: None - b\nArtifacts: None - c\nExposure: Good - d\n"
    "Saliency Visibility: Subject Clear - e\n</answer>"
)
MAGNIFY = '<thinking></thinking>\n<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 500, 500]}}\n</tool_call>'
GAMMA = (
    '<thinking></thinking>\n<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>'
)
GROUP = 4
PROTOCOL = ProtocolConfig(
    tools="both", rubric=True, prompts=PromptConfig(rubric="Assess the image.", gate="Answer, or call one tool.")
)


def _reply(request, group: int) -> str:
    """A function of (image, sample, turn) only: some images make some samples call a tool (so ρ and BATE are live
    and ranks run different numbers of turns), scores differ between images and samples."""
    key = int(request.images[0].float().mean().item() * 10)
    sample = request.trajectory % group  # the request's index counts the trajectories of this rank's whole batch
    if request.kind == "rubric":
        return RUBRIC
    if request.turn == 1 and (sample + key) % 3 == 0:
        return MAGNIFY if key % 2 else GAMMA
    return f"<thinking></thinking> <answer>{1 + (key + 2 * sample) % 9 / 2:.1f}</answer>"


class CountingEngine(ScriptedEngine):
    """The scripted engine with the vLLM engine's per-rank state: a counter of the requests it served
    (``seed_offset``, checkpointed by the trainer). Ranks serve different numbers of requests."""

    seed_offset = 0
    group = GROUP
    """Trajectories per image of the current rollout (training: G; validation: ``validation.samples``)."""

    def __init__(self, processor) -> None:
        super().__init__(processor, lambda request: _reply(request, self.group))

    def generate(self, requests, sampling):
        self.seed_offset += len(requests)
        return super().generate(requests, sampling)


class ProbeModule(GRPOModule):
    """The real module with the scripted engine; records rewards and advantages of each step."""

    def build_engine(self):
        return CountingEngine(self.processor)

    def rollout(self, batch):
        self.engine.group = self.rollout_config.group_size
        torch.rand(1 + self.global_rank)  # ranks draw different amounts, as samplers of different images do
        return super().rollout(batch)

    def validation_step(self, batch, batch_idx):
        self.engine.group = self.validation_config.samples
        return super().validation_step(batch, batch_idx)

    def score(self, groups, batch):
        rewards = super().score(groups, batch)
        self.record = {
            "step": self.global_step,
            "images": [Path(item.image).name for item in batch.items],
            **{name: getattr(rewards, name).tolist() for name in ("rank", "format", "bate", "total")},
            "rho": float(rewards.stats.rho),
        }
        return rewards

    def update(self, trajectories, advantages, beta, timer):
        # sequence credit: one advantage per trajectory, on each of its generated tokens
        self.record["advantages"] = [float(row[t.loss_mask][0]) for row, t in zip(advantages, trajectories)]
        return super().update(trajectories, advantages, beta, timer)


def rng_digest() -> str:
    """torch's and Python's generator states, hashed (without drawing from them)."""
    state = torch.get_rng_state().numpy().tobytes() + repr(random.getstate()).encode()
    return hashlib.sha256(state).hexdigest()[:16]


class Probe(L.Callback):
    """Per-rank records and weights after every optimizer step."""

    def __init__(self, out: Path, phase: str) -> None:
        self.out, self.phase = out, phase
        self.steps: list[dict] = []
        self.val_items: list[str] = []

    def on_train_start(self, trainer, pl_module) -> None:
        self.start_rng = rng_digest()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # before ModelCheckpoint's hook (Lightning runs checkpoint callbacks last): the state the checkpoint saves
        self.steps.append({**pl_module.record, "seed_offset": pl_module.engine.seed_offset, "rng": rng_digest()})
        # the project's gathered weight stream (the vLLM push): whole tensors under ZeRO-3 too, on every rank
        stream = engine_weights(pl_module.policy, zero3=pl_module.zero3 is not None)
        weights = {name: tensor.detach().clone() for name, tensor in stream}
        torch.save(weights, self.out / f"weights_{self.phase}_step{trainer.global_step}_rank{trainer.global_rank}.pt")

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.val_items.extend(Path(item.image).name for item in batch.items)


class CPUDeepSpeed(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy on the CPU: Lightning only refuses it up front (a CUDA check in
    ``setup_environment``, a CUDA device-index check in ``setup_distributed``); DeepSpeed itself runs on its CPU
    accelerator over gloo. The rest of the strategy is Lightning's."""

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)

    def setup_distributed(self) -> None:
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, model, optimizer, lr_scheduler=None):
        # Lightning passes the root device's index as DeepSpeed's device rank: None for a CPU device, which DeepSpeed
        # compares with 0; the CPU accelerator ignores the value, a non-negative one keeps the process group's ranks
        import deepspeed

        engine, optimizer, _, _ = deepspeed.initialize(
            args=argparse.Namespace(device_rank=self.local_rank),
            config=self.config,
            model=model,
            model_parameters=[p for p in model.parameters() if p.requires_grad],
            optimizer=optimizer,
            lr_scheduler=lr_scheduler,
            dist_init_required=False,
        )
        return engine, optimizer


def _strategy(name: str):
    if name == "auto":
        return "auto"
    if name == "ddp":
        return DDPStrategy(process_group_backend="gloo")
    stage = {"deepspeed2": 2, "deepspeed3": 3}[name]
    return CPUDeepSpeed(stage=stage, process_group_backend="gloo")


def _module(spec: dict, run: dict) -> ProbeModule:
    return ProbeModule(
        policy=PolicyConfig(path=spec["kit"], dtype="float32"),
        rollout=RolloutConfig(group_size=GROUP, protocol=PROTOCOL, engine=EngineConfig(name="scripted")),
        grpo=GRPOConfig(kl_schedule=((0, 0.02),), micro_batch_size=run.get("micro_batch_size", 4)),
        # a clip far below the gradient norm: every step is clipped, so a strategy that skips the clip shows. Adam's
        # eps well above float noise: with the default 1e-8 the first step is lr·sign(g), which flips on gradients
        # that are zero up to rounding (ZeRO-3's partitioned reductions round differently)
        optim=OptimConfig(lr=1e-2, warmup_ratio=0.0, grad_clip=0.05, eps=1e-3),
    )


def _data(spec: dict, steps: int) -> IQADataModule:
    root = Path(spec["data"])
    return IQADataModule(
        train=[DatasetSpec("csv", str(root / "train"))],
        val=[DatasetSpec("csv", str(root / "held_out"))],
        batch_size=spec["batch_size"],
        val_batch_size=2,
        max_val_items=spec["val_items"],
        steps=steps,
        seed=3,
    )


def _fit(spec: dict, run: dict, out: Path, phase: str, ckpt_path: str | None = None):
    probe = Probe(out, phase)
    callbacks = [TorchThreads(1), probe]
    full = phase == "first" and run.get("files", True)  # checkpoints, export and validation
    if full:
        callbacks += [
            L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=1, save_top_k=-1),
            ExportHF(str(out / "hf")),
        ]
    trainer = L.Trainer(
        accelerator="cpu",
        devices=spec["devices"],
        num_nodes=spec["num_nodes"],
        strategy=_strategy(run["strategy"]),
        max_steps=run["steps"],
        logger=L.pytorch.loggers.CSVLogger(out, name="logs", version=phase),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=None if full else 0,
        default_root_dir=out,
        callbacks=callbacks,
    )
    module = _module(spec, run)
    trainer.fit(module, datamodule=_data(spec, run["steps"]), ckpt_path=ckpt_path)
    return module, probe, trainer


def fit_and_resume(spec: dict, run: dict) -> dict:
    """One entry of ``spec["runs"]``: fit, then resume from ``resume_from`` when given; this rank's records (also
    written to ``<out>/<name>/rank<r>.json``)."""
    out = Path(spec["out"]) / run["name"]
    out.mkdir(parents=True, exist_ok=True)
    print(f"[worker] run {run['name']}", flush=True)  # the tests split each rank's output by run here
    module, probe, trainer = _fit(spec, run, out, "first")
    rank = trainer.global_rank
    record = {
        "rank": rank,
        "world": trainer.world_size,
        "steps": probe.steps,
        "val_items": probe.val_items,
        "held_out": [vars(result) for result in module.held_out],
        "held_out_rows": len(module.held_out_rows),
    }
    if run.get("resume_from") is not None:
        ckpt = next((out / "ckpt").glob(f"*step={run['resume_from']}.ckpt"))
        _, resumed_probe, _ = _fit(spec, run, out, "resumed", ckpt_path=str(ckpt))
        record["resumed_steps"] = resumed_probe.steps
        record["resumed_start_rng"] = resumed_probe.start_rng
    (out / f"rank{rank}.json").write_text(json.dumps(record))
    print(f"[worker] rank {rank}: {run['name']} done at {time.time():.1f}", flush=True)
    return record


class _SysModules:
    """What ``fake_vllm.install`` needs of pytest's monkeypatch, for a process that ends after the check."""

    @staticmethod
    def setitem(mapping, key, value) -> None:
        mapping[key] = value


def vllm_settings(spec: dict) -> dict:
    """The vllm engine as this rank builds it (against ``tests/fake_vllm.py``'s ``LLM``), in the environment
    Lightning's own process launcher leaves (``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_*``, no ``RANK``), with the
    process group up: vLLM's engine seed, the ``external_launcher`` variables, the request seeds of one generate."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, where fake_vllm lives
    from fake_vllm import FakeLLM, install

    from tooliqa_agent.engines.vllm import VLLMEngine
    from tooliqa_agent.types import GenerationRequest, SamplingConfig

    class EndsAtOnce(FakeLLM):
        def __init__(self, model, **kwargs) -> None:
            super().__init__(model, replies=lambda prompt_ids: [self.eos_token_id], **kwargs)

    install(_SysModules(), EndsAtOnce)
    os.environ.pop("RANK", None)
    config = EngineConfig(name="vllm", model=spec["kit"], dtype="float32")
    engine = VLLMEngine.from_config(config)
    request = GenerationRequest(prompt_ids=(1, 2, 3), images=())
    engine.generate([request, request], SamplingConfig(seed=7))
    try:
        VLLMEngine.from_config(EngineConfig(name="vllm", model=spec["kit"], tensor_parallel_size=2))
        refused = ""
    except ValueError as error:
        refused = str(error)
    return {
        "engine_seed": engine.llm.engine_args["seed"],
        "backend": engine.llm.engine_args["distributed_executor_backend"],
        "env": {key: os.environ[key] for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")},
        "request_seeds": [params.seed for params in engine.llm.params],
        "tensor_parallel_refused": refused,
    }


def main(spec: dict) -> list[dict]:
    """Every run of ``spec["runs"]`` in turn, in this process (the process group, once up, serves them all); then,
    with ``spec["vllm"]``, the vllm engine's per-rank settings (``vllm.json`` per rank)."""
    print(f"[worker] imports done at {time.time():.1f}", flush=True)
    records = [fit_and_resume(spec, run) for run in spec["runs"]]
    if spec.get("vllm"):
        rank = torch.distributed.get_rank()
        (Path(spec["out"]) / f"vllm{rank}.json").write_text(json.dumps(vllm_settings(spec)))
    return records


def wait_for_spec(spec_file: Path, timeout: float = 600) -> dict:
    """The spec, once the launcher has written it (this process was started before the kit was built)."""
    deadline = time.monotonic() + timeout
    while not spec_file.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{spec_file}: no spec after {timeout:.0f} s")
        time.sleep(0.05)
    return json.loads(spec_file.read_text())


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(wait_for_spec(Path(sys.argv[1])))
    os._exit(0)  # skip interpreter teardown of the process group and loader threads (seconds on a busy machine)
