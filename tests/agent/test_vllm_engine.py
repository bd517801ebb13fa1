"""The vLLM engine without vLLM: constructor and sampling mapping, weight-name mapping, prompt building, and the
sleep/wake/sync orchestration against a fake ``vllm`` module and a fake ``LLM`` that records every call.

What this does NOT run: a real ``vllm.LLM`` (vLLM is not installable on these machines, SPEC §6). The fake
(``tests/fake_vllm.py``) reproduces what vllm 0.33's ``LLM`` does where the engine depends on it (seeding, stopping,
sleep/wake, caches; file:line there) and records what the real one would see."""

from __future__ import annotations

import dataclasses
import random
import sys

import numpy as np
import pytest
import torch
from fake_vllm import FakeLLM, install

from tooliqa_agent.engines import ENGINES, engine_class
from tooliqa_agent.engines.vllm import (
    VLLMEngine,
    check_tensor_parallel,
    construction_scope,
    launcher_env,
    llm_kwargs,
    process_rank,
    sampling_kwargs,
    vllm_weight_name,
    vllm_weights,
)
from tooliqa_agent.types import EngineConfig, GenerationRequest, SamplingConfig
from tooliqa_agent.vision import image_token_count


@pytest.fixture
def fake_vllm(monkeypatch):
    """A stand-in ``vllm`` package (``tests/fake_vllm.py``)."""
    install(monkeypatch)


def test_registered_and_lazy():
    assert ENGINES["vllm"] == "tooliqa_agent.engines.vllm:VLLMEngine"
    assert engine_class("vllm") is VLLMEngine
    assert "vllm" not in sys.modules  # importing the engine module does not import vllm


def test_llm_kwargs_map_the_engine_config():
    config = EngineConfig(name="vllm", model="/ckpt", dtype="bfloat16", gpu_memory_utilization=0.4, max_model_len=4096)
    assert llm_kwargs(config, max_images=3, seed=5) == {
        "model": "/ckpt",
        "dtype": "bfloat16",
        "seed": 5,
        "tensor_parallel_size": 1,
        "gpu_memory_utilization": 0.4,
        "max_model_len": 4096,
        "enable_prefix_caching": True,
        "enable_sleep_mode": True,
        "enforce_eager": False,
        "limit_mm_per_prompt": {"image": 3, "video": 0},
        "logprobs_mode": "processed_logprobs",
        "distributed_executor_backend": "external_launcher",
    }
    with pytest.raises(ValueError, match="EngineConfig.model"):
        llm_kwargs(EngineConfig(name="vllm"), max_images=3, seed=0)
    assert launcher_env({}) == {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29533",
    }
    torchrun = {"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "8", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    assert launcher_env(torchrun, rank=3, world_size=8) == {}
    lightning_spawned = {key: value for key, value in torchrun.items() if key != "RANK"}  # its launcher sets no RANK
    assert launcher_env(lightning_spawned, rank=3, world_size=8) == {"RANK": "3"}
    with pytest.raises(ValueError, match="no LOCAL_RANK"):
        launcher_env({"MASTER_ADDR": "h", "MASTER_PORT": "1"}, rank=3, world_size=8)


def test_process_rank_and_tensor_parallel_checks():
    assert process_rank({}) == (0, 1)  # no process group here: the launcher's variables, else one process
    assert process_rank({"RANK": "5", "WORLD_SIZE": "8"}) == (5, 8)
    check_tensor_parallel(1, 8)
    with pytest.raises(ValueError, match="tensor_parallel_size is 2"):
        check_tensor_parallel(2, 8)


def test_sampling_kwargs_map_one_to_one():
    sampling = SamplingConfig(temperature=0.9, top_p=0.95, top_k=20, max_new_tokens=512, seed=42)
    assert sampling_kwargs(sampling, max_tokens=300, seed=49, stop_token_ids=(7, 8)) == {
        "n": 1,
        "temperature": 0.9,
        "top_p": 0.95,
        "top_k": 20,
        "max_tokens": 300,
        "seed": 49,
        "stop_token_ids": [7, 8],
        "logprobs": 0,
        "detokenize": False,
        "skip_special_tokens": False,
    }
    assert sampling_kwargs(SamplingConfig(temperature=0.0), 10, 0, [7])["temperature"] == 0.0  # greedy in both


def test_weight_names_hand_computed():
    assert vllm_weight_name("model.language_model.layers.0.self_attn.q_proj.weight") == (
        "model.language_model.layers.0.self_attn.q_proj.weight"
    )
    assert vllm_weight_name("base_model.model.model.language_model.layers.0.self_attn.q_proj.base_layer.weight") == (
        "model.language_model.layers.0.self_attn.q_proj.weight"
    )
    assert vllm_weight_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert vllm_weight_name("base_model.model.lm_head.original_module.weight") is None
    assert vllm_weight_name("base_model.model.model.language_model.layers.0.mlp.up_proj.lora_A.default.weight") is None


def test_weight_names_of_the_tiny_model_and_its_peft_wrapper(tiny_model_dir):
    import transformers

    peft = pytest.importorskip("peft", reason="peft (a trainer dependency) provides the LoRA-wrapped model")
    config = transformers.AutoConfig.from_pretrained(tiny_model_dir)
    plain = transformers.Qwen3VLForConditionalGeneration(config)
    names = [name for name, _ in plain.named_parameters()]
    assert [name for name, _ in vllm_weights(plain.named_parameters())] == names  # transformers names unchanged
    lora = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj", "up_proj"], modules_to_save=["lm_head"])
    wrapped = peft.get_peft_model(transformers.Qwen3VLForConditionalGeneration(config), lora)
    wrapped.merge_adapter()
    wrapped_names = [name for name, _ in wrapped.named_parameters()]
    assert any(".base_layer." in n for n in wrapped_names) and any("lora_A" in n for n in wrapped_names)
    mapped = [name for name, _ in vllm_weights(wrapped.named_parameters())]
    assert sorted(mapped) == sorted(names)  # every base weight exactly once, no adapter matrix
    shapes = dict(plain.named_parameters())
    assert all(tensor.shape == shapes[name].shape for name, tensor in vllm_weights(wrapped.named_parameters()))


def _prompt(tokenizer, pads: list[int], tail: str) -> list[int]:
    """``<|im_start|>user\\n`` + one vision block per entry of ``pads`` (that many placeholders) + ``tail``."""
    ids = tokenizer.encode("<|im_start|>user\n", add_special_tokens=False)
    for count in pads:
        ids += tokenizer.convert_tokens_to_ids(["<|vision_start|>"] + ["<|image_pad|>"] * count + ["<|vision_end|>"])
    return ids + tokenizer.encode(tail + "<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)


def test_generate_sends_collapsed_prompts_images_and_params(fake_vllm, tiny_model):
    processor, _ = tiny_model
    tokenizer = processor.tokenizer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    images = (
        torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8),
        torch.randint(0, 256, (3, 32, 64), dtype=torch.uint8),
    )
    counts = [image_token_count(image, processor) for image in images]
    assert counts == [4, 2]
    answer = tokenizer.encode("<thinking>a</thinking><answer>3</answer>", add_special_tokens=False)
    llm = FakeLLM(replies=[answer + [im_end], answer[:3]])
    engine = VLLMEngine(llm, processor, max_model_len=200, sleep_mode=False)
    first = GenerationRequest(
        prompt_ids=tuple(_prompt(tokenizer, counts, "rate it")), images=images, grammar='root ::= "x"'
    )
    second = GenerationRequest(prompt_ids=tuple(_prompt(tokenizer, [], "no image")), images=())
    too_long = GenerationRequest(prompt_ids=(5,) * 200, images=())
    sampling = SamplingConfig(temperature=0.7, max_new_tokens=64, seed=100)
    completions = engine.generate([first, too_long, second], sampling)

    assert llm.calls == ["generate"]  # sleep mode off: no wake/sleep around it
    assert [p["prompt_token_ids"] for p in llm.prompts] == [
        _prompt(tokenizer, [1, 1], "rate it"),
        _prompt(tokenizer, [], "no image"),
    ]
    sent = llm.prompts[0]["multi_modal_data"]["image"]
    assert [np.asarray(pil).shape for pil in sent] == [(64, 64, 3), (32, 64, 3)]
    assert all(np.array_equal(np.asarray(pil), image.permute(1, 2, 0).numpy()) for pil, image in zip(sent, images))
    assert "multi_modal_data" not in llm.prompts[1]
    first_params, second_params = (vars(p) for p in llm.params)
    assert first_params.pop("structured_outputs").grammar == 'root ::= "x"'
    assert "structured_outputs" not in second_params
    assert first_params == sampling_kwargs(sampling, 64, 100, [im_end])
    assert second_params == sampling_kwargs(sampling, min(64, 200 - len(second.prompt_ids)), 102, [im_end])

    assert completions[0].token_ids == (*answer, im_end) and completions[0].finished
    assert completions[0].text == "<thinking>a</thinking><answer>3</answer>"
    assert completions[0].logprobs == tuple(-0.5 * (k + 1) for k in range(len(answer) + 1))
    assert completions[1].token_ids == () and not completions[1].finished  # no room: not sent, ends as truncated
    assert completions[2].token_ids == tuple(answer[:3]) and not completions[2].finished
    assert completions[2].text == tokenizer.decode(answer[:3])
    # the next call's requests get fresh seeds, so identical prompts never repeat a sample
    llm.replies = [[im_end]]
    engine.generate([second], sampling)
    assert llm.params[0].seed == 103
    # a request with its own seed (the evaluation's per-image seeds) samples with exactly that seed
    llm.replies = [[im_end]]
    engine.generate([dataclasses.replace(second, seed=987_654_321)], sampling)
    assert llm.params[0].seed == 987_654_321


def test_sleep_wake_order_around_a_weight_sync(fake_vllm, tiny_model):
    processor, _ = tiny_model
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    llm = FakeLLM(replies=[[im_end], [im_end], [im_end]])
    engine = VLLMEngine(llm, processor, max_model_len=100, sleep_mode=True, sleep_level=2)
    request = GenerationRequest(prompt_ids=(1, 2, 3), images=())
    engine.release()  # after construction: free the GPU for the training step
    with pytest.raises(RuntimeError, match="update_weights"):
        engine.generate([request], SamplingConfig())  # level 2 discarded the weights
    weights = [
        ("base_model.model.lm_head.modules_to_save.default.weight", torch.zeros(1)),
        ("base_model.model.lm_head.original_module.weight", torch.zeros(1)),
        ("model.language_model.norm.weight", torch.zeros(1)),
    ]
    engine.update_weights(iter(weights))
    engine.generate([request], SamplingConfig())
    engine.release()
    assert llm.calls == [
        "sleep(2)",
        "wake_up(weights)",
        "load_weights",
        "reset_prefix_cache",
        "reset_encoder_cache",  # vision outputs are cached by image hash: stale after new weights
        "wake_up(kv_cache)",
        "generate",
        "sleep(2)",
    ]
    assert llm.loaded == ["lm_head.weight", "model.language_model.norm.weight"]
    engine.release()  # already asleep: nothing
    assert llm.calls[-1] == "sleep(2)" and llm.calls.count("sleep(2)") == 2

    resting = FakeLLM(replies=[[im_end]])
    engine = VLLMEngine(resting, processor, max_model_len=100, sleep_mode=True, sleep_level=1)
    engine.release()
    engine.generate([request], SamplingConfig())  # level 1 kept the weights in CPU memory: no push needed
    assert resting.calls == ["sleep(1)", "wake_up(weights)", "wake_up(kv_cache)", "generate"]
    with pytest.raises(ValueError, match="sleep_level"):
        VLLMEngine(resting, processor, max_model_len=100, sleep_level=3)


def test_every_generation_config_end_token_finishes_a_turn(fake_vllm, tiny_model):
    """Qwen3-VL's generation config ends on ``<|im_end|>`` and ``<|endoftext|>``; vLLM stops on both (the second with
    ``stop_reason=<id>``) and keeps the id as the last token: both are finished turns, the id left out of the text."""
    processor, _ = tiny_model
    tokenizer = processor.tokenizer
    im_end, eot = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    answer = tokenizer.encode("<answer>3</answer>", add_special_tokens=False)
    llm = FakeLLM(
        replies=[answer + [eot] + answer, answer + [im_end], answer * 2],
        eos_token_id=im_end,
        generation_eos=[im_end, eot],
    )
    engine = VLLMEngine(llm, processor, max_model_len=200, sleep_mode=False, eos_token_ids=[im_end, eot])
    request = GenerationRequest(prompt_ids=(1, 2, 3), images=())
    room = len(answer) + 1
    on_eot, on_im_end, cut = engine.generate([request] * 3, SamplingConfig(max_new_tokens=room))
    assert engine.end_ids == (im_end, eot)
    assert [p.stop_token_ids for p in llm.params] == [[im_end, eot]] * 3
    assert on_eot.token_ids == (*answer, eot) and on_eot.finished and on_eot.text == "<answer>3</answer>"
    assert on_im_end.token_ids == (*answer, im_end) and on_im_end.finished and on_im_end.text == "<answer>3</answer>"
    assert cut.token_ids == tuple((answer * 2)[:room]) and not cut.finished  # ran out of max_tokens


def test_from_config_builds_llm_on_the_cpu_and_keeps_the_callers_rng(fake_vllm, tiny_model_dir, monkeypatch):
    """Built under a default-device context (what Lightning's tensor_init_context is on a GPU, ``cuda:N``; ``cpu:0``
    here, which torch reports apart from ``cpu``), the LLM still sees the CPU; its reseeding (vLLM's
    ``set_random_seed``) leaves the caller's python, numpy and torch RNG streams where they were."""
    for key, value in launcher_env({}).items():  # from_config fills these in os.environ; keep them test-local
        monkeypatch.setenv(key, value)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    expected = (random.random(), float(np.random.rand()), torch.rand(3).tolist())
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    config = EngineConfig(name="vllm", model=str(tiny_model_dir), max_model_len=256)
    with torch.device("cpu", 0):
        engine = engine_class("vllm").from_config(config)
    assert (random.random(), float(np.random.rand()), torch.rand(3).tolist()) == expected
    assert engine.llm.default_device == torch.device("cpu") and torch.get_default_device() == torch.device("cpu")
    assert engine.llm.engine_args["seed"] == 0 and engine.llm.engine_args["enable_sleep_mode"]
    assert engine.sleep_level == 2
    im_end, eot = engine.processor.tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert engine.end_ids == (im_end, eot)  # the tiny kit's generation config lists both, as Qwen3-VL's does
    state = random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state()
    with pytest.raises(ZeroDivisionError), construction_scope():  # restored on the way out of a failed build too
        FakeLLM(seed=0)
        raise ZeroDivisionError
    assert state[0] == random.getstate() and state[1] == np.random.get_state()[1].tolist()
    assert torch.equal(state[2], torch.get_rng_state())
