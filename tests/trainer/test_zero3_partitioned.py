"""The ZeRO-3 path with REAL partitioning on CPU: DeepSpeed's CPU accelerator, gloo, one rank, in a subprocess (it
initialises torch.distributed, which must not leak into the other tests). Loading into placeholders, the LoRA
re-initialisation, the reference engine, the gathered weight stream and the export all have to reproduce a plain
load of the checkpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("deepspeed", reason="deepspeed is in the dev group; install it with `uv sync`")

SCRIPT = textwrap.dedent(
    """
    import gc, json, sys, tempfile
    import deepspeed, torch, transformers
    from lightning.pytorch.strategies import DeepSpeedStrategy
    from tooliqa_trainer import LoraConfig, PolicyConfig, export_hf
    from tooliqa_trainer.policy import engine_weights, load_policy, make_reference
    from tooliqa_trainer.zero3 import hf_zero3_loading, wrap_reference

    deepspeed.init_distributed("gloo")
    torch.set_num_threads(1)
    path = sys.argv[1]
    config = DeepSpeedStrategy(stage=3).config
    config.update(train_micro_batch_size_per_gpu=1, gradient_accumulation_steps=1, gradient_clipping=1.0)
    full = PolicyConfig(path=path, dtype="float32")
    plain, _ = load_policy(full)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6]])
    with torch.no_grad():
        want = plain.eval()(input_ids=ids).logits
    plain_weights = dict(plain.named_parameters())
    holder = hf_zero3_loading(config)
    with deepspeed.zero.Init(config_dict_or_path=config):  # what Lightning's configure_model context does
        policy, processor = load_policy(full)
        reference = make_reference(policy, full, zero3=True)
        lora_policy, _ = load_policy(PolicyConfig(path=path, dtype="float32", lora=LoraConfig(r=4, alpha=8)))
    out = {"partitioned": all(hasattr(p, "ds_id") and p.numel() == 0 for p in policy.parameters())}
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-3)
    deepspeed.initialize(model=policy, optimizer=optimizer, config=config)
    reference = wrap_reference(reference, config)
    with torch.no_grad():
        out["reference"] = (reference(input_ids=ids, use_cache=False).logits - want).abs().max().item()
    stream = {name: tensor.clone() for name, tensor in engine_weights(policy, zero3=True)}
    out["stream_names"] = set(stream) == set(plain_weights)
    out["stream"] = max((stream[n] - plain_weights[n]).abs().max().item() for n in stream)
    lora = {name: tensor.clone() for name, tensor in engine_weights(lora_policy, zero3=True)}
    out["lora_start"] = max((lora[n] - plain_weights[n]).abs().max().item() for n in lora)  # lora_B must start at 0
    exported = export_hf(policy, processor, tempfile.mkdtemp(), zero3=True)
    del holder
    gc.collect()
    loaded = transformers.AutoModelForImageTextToText.from_pretrained(exported, dtype=torch.float32)
    with torch.no_grad():
        out["export"] = (loaded(input_ids=ids).logits - want).abs().max().item()
    print("RESULT " + json.dumps(out))
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_partitioned_loading_reference_stream_and_export_match_a_plain_load(tiny_model_dir):
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "OMP_NUM_THREADS": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tiny_model_dir)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["partitioned"], "the policy must load into ZeRO-3 placeholders"
    assert result["stream_names"]
    assert result["reference"] < 1e-5 and result["stream"] < 1e-6 and result["export"] < 1e-5
    assert result["lora_start"] < 1e-6, "LoRA adapters created on placeholders must be re-initialised (lora_B = 0)"
