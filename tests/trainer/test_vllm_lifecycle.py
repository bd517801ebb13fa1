"""The vLLM engine's life inside a real Lightning fit, against the fake ``LLM`` of ``tests/fake_vllm.py``: where it is
built, the weights it holds after a resume, and its sleep/wake/push order per step. One pytest process."""

from __future__ import annotations

import itertools
from contextlib import contextmanager

import lightning as L
import torch
import transformers
from fake_vllm import FakeLLM, install
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import SingleDeviceStrategy

from tooliqa_agent.engines.vllm import launcher_env
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import EngineConfig, SamplingConfig
from tooliqa_trainer import (
    DatasetSpec,
    GRPOConfig,
    GRPOModule,
    IQADataModule,
    OptimConfig,
    PolicyConfig,
    RolloutConfig,
    TorchThreads,
)

PROTOCOL = ProtocolConfig(tools="none", rubric=False, prompts=PromptConfig(single_turn="Rate this image from 1 to 5."))
PUSH = ["wake_up(weights)", "load_weights", "reset_prefix_cache", "reset_encoder_cache"]


class ScoringLLM(FakeLLM):
    """Answers the k-th prompt with the score 1.5 + k % 4 (scores differ within a group: non-zero advantages)."""

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(model, **kwargs)
        tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        answers = [
            tokenizer.encode(f"<thinking>ok</thinking> <answer>{1.5 + k}</answer><|im_end|>", add_special_tokens=False)
            for k in range(4)
        ]
        count = itertools.count()
        self.replies = lambda prompt_ids: answers[next(count) % 4]


class InitContexts(SingleDeviceStrategy):
    """A CPU stand-in for what a GPU run's strategy wraps around ``configure_model`` (``lightning/pytorch/trainer/
    call.py`` ``_call_configure_model``): ``tensor_init_context`` enters ``with self.root_device`` (``cuda:N`` on a GPU;
    here ``cpu:0``, which torch reports apart from plain ``cpu``), and under ZeRO-3 ``model_sharded_context`` enters
    ``deepspeed.zero.Init`` — here only the nesting counter its ``__enter__``/``__exit__`` keep
    (``deepspeed/runtime/zero/partition_parameters.py:362-381``), as a real Init needs a process group."""

    def __init__(self) -> None:
        super().__init__(device=torch.device("cpu", 0), accelerator=CPUAccelerator())

    @contextmanager
    def model_sharded_context(self):
        from deepspeed.runtime.zero import partition_parameters

        partition_parameters.zero_init_context += 1
        try:
            yield
        finally:
            partition_parameters.zero_init_context -= 1


def _trainer(root, max_steps: int, sanity: int, callbacks=()) -> L.Trainer:
    return L.Trainer(
        strategy=InitContexts(),
        max_steps=max_steps,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=sanity,
        limit_val_batches=1 if sanity else 0,
        default_root_dir=root,
        callbacks=[TorchThreads(1), *callbacks],
    )


def _data(root) -> IQADataModule:
    return IQADataModule(
        train=[DatasetSpec("csv", str(root / "train"))],
        val=[DatasetSpec("csv", str(root / "held_out"))],
        batch_size=2,
        val_batch_size=2,
        steps=5,
        seed=3,
    )


def test_vllm_engine_lifecycle_in_a_fit_and_a_resume(tiny_model_dir, synthetic_root, tmp_path, monkeypatch):
    install(monkeypatch, ScoringLLM)
    for key, value in launcher_env({}).items():  # the engine fills these in os.environ; keep them test-local
        monkeypatch.setenv(key, value)
    kwargs = dict(
        policy=PolicyConfig(path=str(tiny_model_dir), dtype="float32"),
        rollout=RolloutConfig(
            group_size=2,
            protocol=PROTOCOL,
            engine=EngineConfig(name="vllm", max_model_len=4096),
            sampling=SamplingConfig(temperature=1.0, max_new_tokens=32, seed=5),
        ),
        grpo=GRPOConfig(kl_schedule=((0, 0.01),), micro_batch_size=4),
        optim=OptimConfig(lr=1e-3, warmup_ratio=0.0),
    )
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0)
    first = GRPOModule(**kwargs)
    _trainer(tmp_path / "first", 2, sanity=0, callbacks=[checkpoint]).fit(first, datamodule=_data(synthetic_root))
    llm = first.engine.llm
    # 1. built outside Lightning's init contexts: the CPU as default device, no zero.Init open
    assert llm.default_device == torch.device("cpu") and llm.zero_init_depth == 0
    # 3. per step: generate → sleep through the update → wake weights, push, reset caches; the next step's generate
    #    wakes the KV cache (a fresh engine already holds the policy's starting weights: no push before step 0)
    step = ["generate", "sleep(2)", *PUSH]
    assert llm.calls == [*step, "wake_up(kv_cache)", *step]
    trained = {name: p.detach().clone() for name, p in first.policy.named_parameters()}
    last = tmp_path / "ckpt" / "last.ckpt"

    # 2. each new engine loads the checkpoint directory; the resumed policy's weights reach it before its first use:
    #    the first rollout of a resumed fit (Lightning skips the sanity check when resuming mid-epoch), the first
    #    batch of a validate run. A new engine is awake: nothing to wake before that push.
    resumed = GRPOModule(**kwargs)
    _trainer(tmp_path / "resumed", 3, sanity=1).fit(resumed, datamodule=_data(synthetic_root), ckpt_path=last)
    llm = resumed.engine.llm
    assert llm.calls == [*PUSH[1:], *step, "wake_up(kv_cache)", "generate"]  # validation after the last step
    assert _equal(llm.pushes[0], trained)
    validated = GRPOModule(**kwargs)
    _trainer(tmp_path / "validated", 3, sanity=1).validate(validated, datamodule=_data(synthetic_root), ckpt_path=last)
    llm = validated.engine.llm
    assert llm.calls == [*PUSH[1:], "generate"] and _equal(llm.pushes[0], trained)
    base = transformers.AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32)
    assert any(not torch.equal(p, trained[name]) for name, p in base.named_parameters()), "the first fit trained"


def _equal(pushed: dict[str, torch.Tensor], weights: dict[str, torch.Tensor]) -> bool:
    return sorted(pushed) == sorted(weights) and all(torch.equal(pushed[name], weights[name]) for name in weights)
