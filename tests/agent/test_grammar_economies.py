"""Grammar economies for an untrained model: a menu of magnifier boxes, forced text in its own tokens (kept out of the
loss), rubric levels without notes."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent.grammar import GrammarConfig, GrammarError, build_grammars
from tooliqa_agent.tiny_model import TinyModelConfig

from ._checks import one_thread  # noqa: F401 (autouse fixture)
from .test_grammar import GAMMA, MAGNIFIER, accepts


def test_box_choices_make_the_box_a_menu(compiler, tokenizer):
    quadrants = ((0, 0, 500, 500), (500, 500, 1000, 1000))
    ebnf = build_grammars([MAGNIFIER, GAMMA], GrammarConfig(max_thinking_chars=0, box_choices=quadrants)).action.ebnf
    call = '<thinking></thinking> <tool_call>\n{{"name": "magnifier", "arguments": {{"bbox_2d": {}}}}}\n</tool_call>'
    assert accepts(compiler, tokenizer, ebnf, call.format("[0, 0, 500, 500]"))
    assert accepts(compiler, tokenizer, ebnf, call.format("[500, 500, 1000, 1000]"))
    assert not accepts(compiler, tokenizer, ebnf, call.format("[0, 0, 400, 500]"))
    assert accepts(compiler, tokenizer, ebnf, '<thinking></thinking> <tool_call>\n{"name": "gamma_corrector", '
                   '"arguments": {"mode": "darken"}}\n</tool_call>')  # fmt: skip
    with pytest.raises(GrammarError, match="box_choices"):
        GrammarConfig(box_choices=((10, 0, 5, 20),))


def test_canonical_forced_text_keeps_the_text_and_cuts_the_steps(tiny_model):
    """With ``canonical_forced_text`` the engine emits forced grammar text in the tokenizer's own tokens: every turn
    still parses under the same grammar, in fewer decode steps than the random model's character-by-character
    splits."""
    from tooliqa_agent import Agent, ProtocolConfig, SamplingConfig
    from tooliqa_agent.engines.hf import HFEngine

    processor, model = tiny_model
    protocol = ProtocolConfig(structured=True, grammar=GrammarConfig(max_thinking_chars=0, max_note_chars=1))
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
              for i in range(2)]  # fmt: skip
    steps = {}
    for canonical in (False, True):
        agent = Agent(HFEngine(model, processor, canonical_forced_text=canonical), processor, protocol)
        groups = agent.rollout(images, 4, SamplingConfig(temperature=1.0, max_new_tokens=400, seed=3))
        trajectories = [t for g in groups for t in g]
        assert all(t.failure is None for t in trajectories), [t.failure for t in trajectories]
        steps[canonical] = sum(t.num_output_tokens for t in trajectories)
        rubric = [t.turns[0].text for t in trajectories]
        assert all(text.endswith("\n</answer>") and "Saliency Visibility: " in text for text in rubric)
        if canonical:  # forced text is marked, and the loss keeps only the policy's own choices
            from tooliqa_agent.collate import collate

            tokenizer = processor.tokenizer
            for t in trajectories:
                assert t.forced_mask is not None and bool((t.forced_mask & ~t.loss_mask).sum() == 0)
                digits = [i for i in range(t.prompt_length, len(t.input_ids)) if t.loss_mask[i]
                          and tokenizer.decode([int(t.input_ids[i])]) in "12345"]  # fmt: skip
                assert digits and not t.forced_mask[digits[-1]]  # the score digit is a decision
            batch = collate(trajectories, processor)
            kept = int(batch.loss_mask.sum())
            assert 0 < kept < 0.5 * sum(int(t.loss_mask.sum()) for t in trajectories)
    assert steps[True] < 0.9 * steps[False], steps  # the default kit: 1,034 vs 1,222 steps; the demo kit: ~2×


def test_zero_note_chars_drops_the_note(compiler, tokenizer):
    from tooliqa_rewards import FormatRecord, format_reward

    ebnf = build_grammars([MAGNIFIER], GrammarConfig(max_thinking_chars=0, max_note_chars=0)).rubric.ebnf
    lines = "Sharpness: High\nNoise: None\nArtifacts: Minor\nExposure: Good\nSaliency Visibility: Obscured"
    rubric = f"<thinking></thinking>\n<answer>\n{lines}\n</answer>"
    assert accepts(compiler, tokenizer, ebnf, rubric)
    record = FormatRecord(rubric, ("<thinking></thinking> <answer>3</answer>",), (), 3.0)
    assert bool(format_reward([record]).passed.all())  # the format reward accepts a rubric without notes
    assert not accepts(compiler, tokenizer, ebnf, "<thinking></thinking>\n<answer>\n" + lines.replace(
        "Sharpness: High", "Sharpness: High - a") + "\n</answer>")  # fmt: skip
    with pytest.raises(GrammarError, match="max_note_chars"):
        GrammarConfig(max_note_chars=-1)


def test_zero_gap_writes_the_action_right_after_thinking(compiler, tokenizer):
    grammars = build_grammars([MAGNIFIER, GAMMA], GrammarConfig(max_thinking_chars=0, max_gap_chars=0))
    assert accepts(compiler, tokenizer, grammars.final.ebnf, "<thinking></thinking><answer>3</answer>")
    assert not accepts(compiler, tokenizer, grammars.final.ebnf, "<thinking></thinking> <answer>3</answer>")
    assert accepts(
        compiler,
        tokenizer,
        build_grammars([MAGNIFIER], GrammarConfig(max_thinking_chars=0)).final.ebnf,
        "<thinking></thinking>\n<answer>3</answer>",
    )
    with pytest.raises(GrammarError, match="max_gap_chars"):
        GrammarConfig(max_gap_chars=-1)


DEMO_PROMPTS = (
    "Assess Sharpness, Noise, Artifacts, Exposure and Saliency Visibility.",
    "Answer with a score, or call one tool.",
)


@pytest.fixture(scope="module")
def phrase_kit(tmp_path_factory):
    import transformers

    from tooliqa_agent.tiny_model import build_tiny_qwen3vl

    config = TinyModelConfig(max_pixels=4096, bpe_vocab_size=2000, protocol_vocabulary=True, protocol_phrases=True,
                             phrases=DEMO_PROMPTS + ("[250, 250, 750, 750]",))  # fmt: skip
    path = build_tiny_qwen3vl(tmp_path_factory.mktemp("phrase-kit"), config)
    processor = transformers.AutoProcessor.from_pretrained(path)
    return processor, transformers.AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)


def test_protocol_phrases_read_the_protocol_in_few_tokens(phrase_kit):
    """Each fixed line of the protocol is one token (the system block with both schemas: 33 tokens instead of
    ≈ 400); the protocol's texts decode back unchanged."""
    from tooliqa_agent import Agent, ProtocolConfig
    from tooliqa_agent.engines.scripted import ScriptedEngine
    from tooliqa_agent.prompts import PromptConfig

    processor, _ = phrase_kit
    tokenizer = processor.tokenizer
    protocol = ProtocolConfig(prompts=PromptConfig(rubric=DEMO_PROMPTS[0], gate=DEMO_PROMPTS[1]))
    first = Agent(ScriptedEngine(processor, []), processor, protocol)._first
    assert len(first) < 45, len(first)
    texts = [
        "<thinking></thinking><answer>\nSharpness: High\nNoise: None\nArtifacts: Minor\nExposure: Poor\n"
        "Saliency Visibility: Subject Clear\n</answer>",
        '<thinking></thinking><tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [250, 250, 750, 750]}}'
        "\n</tool_call>",
        '<thinking></thinking><tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>',
        "<thinking></thinking><answer>3</answer>",
        protocol.prompts.observation_text("Magnified view of region [250, 250, 750, 750] of the original image.", 1),
    ]
    counts = [len(tokenizer.encode(text)) for text in texts]
    assert counts[:4] == [15, 9, 10, 4], counts
    for text in texts:
        assert tokenizer.decode(tokenizer.encode(text)) == text
    assert "\n".join(texts) not in tokenizer.get_vocab()  # phrases are lines, not whole turns


def test_forcing_leaves_a_choice_to_the_policy(phrase_kit):
    """A forced text that allowed tokens go beyond (``"<"`` before ``"<answer>"`` / ``"<tool_call>"``) is a choice,
    not forced: the action is one sampled token, and every trajectory still follows the grammar."""
    from tooliqa_agent import Agent, ProtocolConfig, SamplingConfig
    from tooliqa_agent.engines.hf import HFEngine

    processor, model = phrase_kit
    grammar = GrammarConfig(max_thinking_chars=0, max_note_chars=0, max_gap_chars=0, score_decimals=0,
                            box_choices=((0, 0, 500, 500), (250, 250, 750, 750)))  # fmt: skip
    protocol = ProtocolConfig(structured=True, grammar=grammar)
    agent = Agent(HFEngine(model, processor, canonical_forced_text=True), processor, protocol)
    images = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(i))
              for i in range(3)]  # fmt: skip
    groups = agent.rollout(images, 4, SamplingConfig(temperature=1.0, max_new_tokens=60, seed=1))
    trajectories = [t for g in groups for t in g]
    assert all(t.failure is None for t in trajectories), [t.failure for t in trajectories]
    tokenizer = processor.tokenizer
    action_heads = set()
    for t in trajectories:
        generated = [i for i in range(t.prompt_length, len(t.input_ids)) if t.loss_mask[i]]
        for turn in t.turns:
            positions, generated = generated[: turn.num_tokens], generated[turn.num_tokens :]
            if turn.kind == "action":  # "<thinking></thinking>" is forced, the action token after it is not
                assert t.forced_mask[positions[0]] and not t.forced_mask[positions[1]], turn.text
                action_heads.add(tokenizer.decode([int(t.input_ids[positions[1]])]))
    assert all(head.startswith("<") for head in action_heads) and {"<answer>", "<tool_call>"} & action_heads
    assert sum(t.num_output_tokens for t in trajectories) / len(trajectories) < 40
