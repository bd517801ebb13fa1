"""Build a complete, randomly initialised Qwen3-VL checkpoint directory offline.

The tiny kit is product code: tests, the CPU demo and CI train and evaluate it, and it loads through exactly the
path real weights take (``AutoProcessor`` / ``AutoModelForImageTextToText.from_pretrained`` on a directory), so the
rest of the project has one loading path for both. Nothing is downloaded: the tokenizer is a byte-level BPE trained
here on the protocol's own vocabulary, carrying every Qwen special token; the weights are random for a seed.

    python -m tooliqa_agent.tiny_model --out runs/tiny-qwen3vl --hidden_size 64 --num_layers 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tooliqa_agent.chat_template import QWEN3_VL_CHAT_TEMPLATE

# Same strings as the real Qwen3-VL tokenizer (the ids differ): the first is the pad token, the rest special.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not special in Qwen3: they survive ``skip_special_tokens=True``, which the tool-call parser relies on.
ADDED_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>", "</think>")

# Qwen2's pre-tokenisation regex (digits split one by one, as in the real tokenizer).
_PRETOKENIZE_REGEX = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

# The BPE learns its merges from the protocol's vocabulary, so protocol text costs few tokens on the tiny model.
_CORPUS = (
    "You are doing the image quality assessment task. Instead of giving a score immediately, first analyze the image.",
    "<thinking> The image looks sharp with little noise. </thinking>",
    "<answer>\nSharpness: High - Brief note\nNoise: None - Brief note\nArtifacts: Minor - Brief note\n"
    "Exposure: Good - Brief note\nSaliency Visibility: Subject Clear - Brief Note\n</answer>",
    "Sharpness: Low Medium High. Noise: None Visible Severe. Artifacts: None Minor Severe.",
    "Exposure: Poor Good Excellent. Saliency Visibility: Subject Clear Obscured.",
    "Single-Action per Turn: choose EXACTLY ONE - A) Final answer (1.00 - 5.00) - B) Tool call",
    '<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [120, 250, 480, 610]}}\n</tool_call>',
    '<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>',
    '{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": 2.0}}',
    "<answer>3.75</answer> <answer>1.20</answer> <answer>4.50</answer> <answer>2.05</answer>",
    "Magnified view of region [x1, y1, x2, y2] of the original image. Gamma-corrected view of the original image.",
    "Tool call failed: the box is empty. Nothing was executed. No tool calls remain. Give the final answer.",
    "blurry noisy compressed dark bright overexposed underexposed colors natural texture detail quality score",
    "0123456789 .,:;!?()[]{}<>\"'-_/\\|@#$%^&*+=~`",
)


@dataclass(frozen=True)
class TinyModelConfig:
    """Sizes and pixel bounds of a tiny random Qwen3-VL. Defaults build in well under 10 s on a 2-core CPU."""

    hidden_size: int = 64
    """Text hidden size; also the vision tower's output size."""
    intermediate_size: int = 128
    """Text MLP width."""
    num_layers: int = 2
    """Text decoder layers."""
    num_heads: int = 4
    """Text attention heads (head_dim = hidden_size / num_heads, must be even and ≥ 8)."""
    num_kv_heads: int = 2
    """Text key/value heads (grouped-query attention)."""
    vision_depth: int = 2
    """Vision transformer blocks."""
    vision_hidden_size: int = 64
    """Vision transformer width."""
    vision_heads: int = 4
    """Vision attention heads."""
    min_pixels: int = 32 * 32
    """Image processor lower pixel bound (one LLM token covers 32×32 pixels)."""
    max_pixels: int = 128 * 128
    """Image processor upper pixel bound."""
    bpe_vocab_size: int = 600
    """Target size of the trained byte-level BPE vocabulary (specials included)."""
    protocol_vocabulary: bool = False
    """Also learn merges from every default prompt of the protocol (P0, PG, P_final, observation and failure turns)
    and the tool schemas, so that, as with a real tokenizer, their words cost one token each: shorter prompts and
    fewer decode steps (the CPU demo). Off keeps the kits built before this option byte-identical."""
    protocol_phrases: bool = False
    """Also make every fixed line of the protocol one token: each line of the tool-system block the chat template
    renders (its boilerplate and each tool's schema line), each line of the default prompts, the fixed parts of the
    observation, failure and final turns, and ``phrases``. A random model attends almost uniformly, so each prompt
    token dilutes the few visual tokens: on the CPU demo's kit the image-dependent spread of the state the score is
    sampled from is 0.19 single-turn (53 tokens), 0.013 under the full protocol (499 tokens) and 0.066 with phrases
    (105 tokens; ``benchmarks/demo_probe.py --set context``). The protocol's text is unchanged; only this kit reads
    it in fewer tokens (an economy of the CPU demo, like ``protocol_vocabulary``)."""
    phrases: tuple[str, ...] = ()
    """Further texts made one token each when ``protocol_phrases`` is on: a config's own prompts (the CPU demo's
    short P0 and PG)."""
    seed: int = 0
    """Seed of the random weights; the same seed gives the same checkpoint bytes."""

    def __post_init__(self) -> None:
        head_dim, rest = divmod(self.hidden_size, self.num_heads)
        if rest or head_dim % 2 or head_dim < 8:
            raise ValueError(
                f"hidden_size / num_heads must be an even integer ≥ 8, got {self.hidden_size}/{self.num_heads}"
            )
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be a multiple of vision_heads")
        if not 32 * 32 <= self.min_pixels <= self.max_pixels:
            raise ValueError(f"need 1024 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}")


def build_tokenizer(config: TinyModelConfig):
    """Train the byte-level BPE and wrap it as a ``Qwen2Tokenizer`` with Qwen3-VL's special and added tokens."""
    corpus = list(_CORPUS)
    if config.protocol_vocabulary:
        corpus += _protocol_texts()
        # the system block the chat template renders around the tool schemas: rendered by a first tokenizer
        corpus.append(_system_block(_wrap(_train_bpe(corpus, config))))
    tokenizer = _wrap(_train_bpe(corpus, config))
    if config.protocol_phrases:
        from tokenizers import AddedToken

        phrases = _protocol_phrases(tokenizer) + [p for p in config.phrases if p.strip()]
        tokenizer.add_tokens([AddedToken(p, special=False, normalized=False) for p in dict.fromkeys(phrases)])
    return tokenizer


def _train_bpe(corpus: list[str], config: TinyModelConfig):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.bpe_vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS + ADDED_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no text is ever unknown
        show_progress=False,
    )
    bpe.train_from_iterator(corpus * 8, trainer=trainer)
    return bpe


def _wrap(bpe):
    """A ``Qwen2Tokenizer`` with Qwen3-VL's special and added tokens around the trained byte-level BPE."""
    import transformers
    from tokenizers import AddedToken

    state = json.loads(bpe.to_str())
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]]
    tokenizer = transformers.Qwen2Tokenizer(
        vocab=state["model"]["vocab"],
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        padding_side="left",
        clean_up_tokenization_spaces=False,
        errors="replace",
    )
    specials = [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS[1:]]
    tokenizer.add_special_tokens({"extra_special_tokens": specials})
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in ADDED_TOKENS])
    for token in SPECIAL_TOKENS + ADDED_TOKENS:
        if tokenizer.convert_tokens_to_ids(token) != bpe.token_to_id(token):
            raise RuntimeError(f"token {token!r} moved while wrapping the BPE; the tiny kit would be inconsistent")
    tokenizer.chat_template = QWEN3_VL_CHAT_TEMPLATE
    return tokenizer


def _protocol_texts() -> list[str]:
    """The protocol's default prompts and the tool schemas as the chat template shows them."""
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_tools import make_toolkit

    prompts = PromptConfig()
    texts = [prompts.rubric, prompts.gate, prompts.final, prompts.answer_only, prompts.task, prompts.single_turn]
    texts += [prompts.observation_text("Magnified view of region [0, 0, 500, 500] of the original image.", 1)]
    texts += [prompts.observation_text("Gamma-corrected view (γ = 0.5, brightened) of the original image.", 0)]
    texts += [prompts.failure_text("magnifier: the box is empty inside the image", 1)]
    texts += [json.dumps(schema) for schema in make_toolkit("both").schemas()]
    return texts


def _protocol_phrases(tokenizer) -> list[str]:
    """The protocol's fixed lines — the system block's (special tokens and bare tags aside), the default prompts', the
    fixed text around the numbers of the observation, failure and final turns — and the fixed pieces of the
    structured-decoding grammar's turns, so that text the grammar forces takes few decode steps."""
    from tooliqa_agent.prompts import PromptConfig

    prompts = PromptConfig()
    texts = [_system_block(tokenizer), prompts.rubric, prompts.gate, prompts.final, prompts.answer_only]
    texts += [prompts.task, prompts.single_turn, "assistant"]  # the role name the chat template writes each turn
    texts += [prompts.failure.format(reason="\n"), prompts.observation.format(description="\n", remaining="\n")]
    # the tools' view descriptions (tooliqa_tools) around their numbers
    texts += ["Magnified view of region [", "] of the original image.", "Gamma-corrected view (γ = "]
    texts += [", brightened) of the original image.", ", darkened) of the original image."]
    lines = [line for text in texts for line in text.split("\n")]
    lines = [line for line in lines if len(line) > 2 and "<|" not in line and not _bare_tag(line)]
    # a line also with its newline: a grammar piece that starts with one must not split the line it begins
    return lines + ["\n" + line for line in lines] + _grammar_pieces()


def _grammar_pieces() -> list[str]:
    """The grammar's fixed text between its choices (``tooliqa_agent.grammar``'s layout): the tags, each rubric line's
    head, and the tool-call JSON around the tool name and arguments."""
    from tooliqa_agent.grammar import RUBRIC
    from tooliqa_tools import make_toolkit

    pieces = ["<thinking></thinking>", "<think></think>", "<answer>\n", "\n</answer>", "<answer>", "</answer>"]
    pieces += [f"{attribute.name}: " for attribute in RUBRIC[:1]] + [f"\n{a.name}: " for a in RUBRIC[1:]]
    pieces += ['\n{"name": "', '", "arguments": {"', '": ', ", "]
    for schema in make_toolkit("both").schemas():
        pieces += [schema["name"], *schema["parameters"]]
    pieces += ["]}}\n</tool_call>", '"}}\n</tool_call>', "}}\n</tool_call>"]
    return pieces


def _bare_tag(line: str) -> bool:
    return line.startswith("<") and line.endswith(">") and line.count("<") == 1


def _system_block(tokenizer) -> str:
    from tooliqa_tools import make_toolkit

    messages = [{"role": "user", "content": "x"}]
    return tokenizer.apply_chat_template(messages, tools=make_toolkit("both").schemas(), tokenize=False)


def build_processor(config: TinyModelConfig, tokenizer):
    """Qwen3-VL processor: patch 16, merge 2, temporal patch 2, mean/std 0.5, the configured pixel bounds."""
    import transformers

    vision = dict(patch_size=16, temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    image_processor = transformers.Qwen2VLImageProcessor(
        size={"shortest_edge": config.min_pixels, "longest_edge": config.max_pixels}, **vision
    )
    video_processor = transformers.Qwen3VLVideoProcessor(
        size={"shortest_edge": 2 * config.min_pixels, "longest_edge": 2 * config.max_pixels}, **vision
    )
    return transformers.Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )


def _mrope_section(head_dim: int) -> list[int]:
    """Split the rotary half-dimension over (t, h, w) in the real model's 24:20:20 proportion."""
    half = head_dim // 2
    spatial = half * 20 // 64
    return [half - 2 * spatial, spatial, spatial]


def build_model_config(config: TinyModelConfig, tokenizer):
    """A ``Qwen3VLConfig`` whose token ids and vision geometry agree with the tokenizer and image processor."""
    import transformers

    head_dim = config.hidden_size // config.num_heads
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5_000_000.0,
            "mrope_section": _mrope_section(head_dim),
            "mrope_interleaved": True,
        },
    )
    vision_config = dict(
        depth=config.vision_depth,
        hidden_size=config.vision_hidden_size,
        intermediate_size=2 * config.vision_hidden_size,
        num_heads=config.vision_heads,
        in_channels=3,
        patch_size=16,
        temporal_patch_size=2,
        spatial_merge_size=2,
        out_hidden_size=config.hidden_size,
        num_position_embeddings=64,  # must be a square: an 8×8 learned grid, interpolated
        deepstack_visual_indexes=list(range(min(config.vision_depth, config.num_layers, 3))),
    )
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return transformers.Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen3vl(out_dir: str | os.PathLike, config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Write a complete random Qwen3-VL checkpoint directory and return its path.

    The directory holds ``config.json``, ``generation_config.json``, safetensors weights, the tokenizer files with the
    chat template, and the processor config: everything ``from_pretrained`` reads from a real Qwen3-VL directory.
    """
    import torch
    import transformers

    out = Path(out_dir)
    tokenizer = build_tokenizer(config)
    processor = build_processor(config, tokenizer)
    model_config = build_model_config(config, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = transformers.Qwen3VLForConditionalGeneration(model_config)
    stop_ids = [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    model.generation_config.eos_token_id = stop_ids
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.do_sample = False
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tiny_model_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    return out


def ensure_tiny_qwen3vl(out_dir: str | os.PathLike, config: TinyModelConfig = TinyModelConfig()) -> Path:
    """Build the checkpoint unless ``out_dir`` already holds one made with the same config."""
    out = Path(out_dir)
    marker = out / "tiny_model_config.json"
    if marker.is_file() and json.loads(marker.read_text()) == json.loads(json.dumps(dataclasses.asdict(config))):
        return out
    return build_tiny_qwen3vl(out, config)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    for field in dataclasses.fields(TinyModelConfig):
        if field.name != "phrases":
            parser.add_argument(f"--{field.name}", type=int, default=field.default)
    args = vars(parser.parse_args(argv))
    out = build_tiny_qwen3vl(args.pop("out"), TinyModelConfig(**args))
    print(f"wrote tiny Qwen3-VL checkpoint to {out}")


if __name__ == "__main__":
    main()
