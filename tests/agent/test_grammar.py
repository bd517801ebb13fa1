"""Structured decoding: the turn grammars (checked with xgrammar's matcher on tokenized text), the per-row logits
processor, and 200 trajectories of the untrained tiny model that all parse."""

from __future__ import annotations

import json
import re
import time
from fractions import Fraction

import pytest
import torch
import xgrammar as xgr

from tooliqa_agent import grammar
from tooliqa_agent.grammar import (
    GrammarConfig,
    GrammarError,
    GrammarLogitsProcessor,
    XGrammarConstraintFactory,
    build_grammars,
    turn_grammar,
)
from tooliqa_tools import ParamSpec, ToolSchema, make_toolkit

GAMMA = ToolSchema(
    "gamma_corrector",
    "gamma",
    (
        ParamSpec("mode", "string", "mode", enum=("brighten", "darken")),
        ParamSpec("gamma", "number", "gamma", range=(0.2, 5.0), required=False),
    ),
)
MAGNIFIER = ToolSchema("magnifier", "zoom", (ParamSpec("bbox_2d", "array", "box", range=(0, 1000), length=4),))
CONFIG = GrammarConfig(max_thinking_chars=12, max_note_chars=6)
RUBRIC = (
    "<answer>\nSharpness: High - crisp\nNoise: None - clean\nArtifacts: Minor - jpeg\nExposure: Good - even\n"
    "Saliency Visibility: Subject Clear - clear\n</answer>"
)


@pytest.fixture(scope="module")
def grammars():
    return build_grammars([MAGNIFIER, GAMMA], CONFIG)


def accepts(compiler, tokenizer, ebnf: str, text: str) -> bool:
    """Does the grammar accept ``text`` (as the tokenizer splits it) followed by ``<|im_end|>`` and then stop?"""
    matcher = xgr.GrammarMatcher(compiler.compile_grammar(ebnf))
    if not all(matcher.accept_token(token) for token in tokenizer.encode(text)):
        return False
    return matcher.accept_token(tokenizer.convert_tokens_to_ids("<|im_end|>")) and matcher.is_terminated()


def test_integer_range_is_exact(compiler):
    matcher = xgr.GrammarMatcher(compiler.compile_grammar("root ::= " + grammar._integer(0, 1000).text))

    def ok(text: str) -> bool:
        matcher.reset()
        return matcher.accept_string(text) and matcher.is_completed()

    assert all(ok(str(value)) for value in range(1001))
    for bad in ("1001", "01", "007", "-1", "10000", "1000.0", "", " 5"):
        assert not ok(bad), bad
    signed = xgr.GrammarMatcher(compiler.compile_grammar("root ::= " + grammar._integer(-12, 7).text))
    for value in range(-20, 20):
        signed.reset()
        assert (signed.accept_string(str(value)) and signed.is_completed()) == (-12 <= value <= 7), value


@pytest.mark.parametrize(("low", "high"), [("0.2", "5.0"), ("1", "5"), ("0", "1"), ("0.35", "0.4")])
def test_decimal_range_matches_a_reference(compiler, low, high):
    expr = grammar._decimal(Fraction(low), Fraction(high), 2)
    matcher = xgr.GrammarMatcher(compiler.compile_grammar("root ::= " + expr.text))
    candidates = [str(i) for i in range(7)] + [
        f"{i}.{f:0{w}d}" for i in range(7) for w in (1, 2, 3) for f in range(10**w)
    ]
    for text in candidates + ["05", "1.", ".5", "2.5e0"]:
        matcher.reset()
        got = matcher.accept_string(text) and matcher.is_completed()
        well_formed = re.fullmatch(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?", text) is not None
        assert got == (well_formed and Fraction(low) <= Fraction(text) <= Fraction(high)), text
        assert expr.max_bytes >= len(text) or not got


VALID_ACTIONS = [
    '<thinking>zoom in</thinking> <tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [0, 250, 999, 1000]}}'
    "\n</tool_call>",
    '<thinking>dark</thinking>\n<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>',
    '<thinking>dark</thinking><tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": 0.25}}'
    "\n</tool_call>",
    "<thinking>fine</thinking> <answer>3.75</answer>",
    "<thinking>fine\nreally</thinking>\n\n<answer>5</answer>",
]
INVALID_ACTIONS = [
    "<answer>3</answer>",  # no thinking
    "<thinking></thinking> <answer>3</answer>",  # empty thinking
    "<thinking> x</thinking> <answer>3</answer>",  # thinking starts with a space
    "<thinking>a<b</thinking> <answer>3</answer>",  # a tag character in free text
    "<thinking>" + "x" * 13 + "</thinking> <answer>3</answer>",  # thinking over the bound
    "<thinking>ok</thinking> <answer>5.5</answer>",
    "<thinking>ok</thinking> <answer>0.99</answer>",
    "<thinking>ok</thinking> <answer>3.755</answer>",
    "<thinking>ok</thinking> <answer>3</answer> <answer>4</answer>",  # two actions
    "<thinking>ok</thinking>   <answer>3</answer>",  # three separator characters
    '<thinking>ok</thinking> <tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3]}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3, 1001]}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3, 4.5]}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "medium"}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "gamma_corrector", "arguments": {"gamma": 2}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "darken", "gamma": 6}}'
    "\n</tool_call>",
    '<thinking>ok</thinking> <tool_call>\n{"name": "zoom", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>',
    '<thinking>ok</thinking> <tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [1, 2, 3, 4]}}\n</tool_call>'
    " <answer>3</answer>",
]


@pytest.mark.parametrize("text", VALID_ACTIONS)
def test_action_grammar_accepts_valid_turns(compiler, tokenizer, grammars, text):
    assert accepts(compiler, tokenizer, grammars.action.ebnf, text)


@pytest.mark.parametrize("text", INVALID_ACTIONS)
def test_action_grammar_rejects_invalid_turns(compiler, tokenizer, grammars, text):
    assert not accepts(compiler, tokenizer, grammars.action.ebnf, text)


def test_rubric_and_final_grammars(compiler, tokenizer, grammars):
    rubric, final = grammars.rubric.ebnf, grammars.final.ebnf
    assert accepts(compiler, tokenizer, rubric, "<thinking>looks ok</thinking> " + RUBRIC)
    assert accepts(
        compiler, tokenizer, rubric, "<thinking>ok</thinking>\n" + RUBRIC.replace("Subject Clear", "Obscured")
    )
    for bad in (
        RUBRIC.replace("High", "Great"),  # a level not allowed
        RUBRIC.replace("Noise: None - clean\n", ""),  # a missing line
        RUBRIC.replace("Sharpness: High - crisp\nNoise: None - clean", "Noise: None - clean\nSharpness: High - crisp"),
        RUBRIC.replace(" - crisp", ""),  # no note
        RUBRIC.replace("crisp", "crisp and sharp"),  # note over the bound
        RUBRIC.replace("crisp", "cri\nsp"),  # a note spans lines
    ):
        assert not accepts(compiler, tokenizer, rubric, "<thinking>ok</thinking> " + bad)
    assert accepts(compiler, tokenizer, final, "<thinking>ok</thinking> <answer>1.00</answer>")
    assert not accepts(compiler, tokenizer, final, VALID_ACTIONS[1])  # no tool call where only an answer is allowed
    assert not accepts(compiler, tokenizer, final, "<thinking>ok</thinking> " + RUBRIC)


def test_grammar_ends_with_the_stop_token_only(compiler, tokenizer, grammars):
    stop = tokenizer.convert_tokens_to_ids("<|im_end|>")
    matcher = xgr.GrammarMatcher(compiler.compile_grammar(grammars.final.ebnf))
    assert not matcher.accept_token(stop)  # not before the turn is complete
    assert matcher.accept_string("<thinking>ok</thinking><answer>2</answer>")
    bitmask = xgr.allocate_token_bitmask(1, len(tokenizer))
    matcher.fill_next_token_bitmask(bitmask)
    allowed = [t for t in range(len(tokenizer)) if bitmask[0, t // 32] >> (t % 32) & 1]
    assert allowed == [stop]


def test_max_bytes_is_the_longest_admitted_text(compiler, tokenizer, grammars):
    longest_final = "<thinking>" + "x" * 12 + "</thinking>\n\n<answer>1.25</answer>"
    assert accepts(compiler, tokenizer, grammars.final.ebnf, longest_final)
    assert grammars.final.max_bytes == len(longest_final)
    longest_call = (
        "<thinking>" + "x" * 12 + '</thinking>\n\n<tool_call>\n{"name": "gamma_corrector", "arguments": '
        '{"mode": "brighten", "gamma": 0.25}}\n</tool_call>'
    )
    assert accepts(compiler, tokenizer, grammars.action.ebnf, longest_call)
    assert grammars.action.max_bytes == len(longest_call)
    notes = RUBRIC.replace("crisp", "crisp!").replace("clean", "clean!").replace("jpeg", "jpeg!!")
    notes = notes.replace("even", "even!!").replace("Subject Clear - clear", "Subject Clear - clear!")
    longest_rubric = "<thinking>" + "x" * 12 + "</thinking>\n\n" + notes.replace("Noise: None", "Noise: Visible")
    longest_rubric = longest_rubric.replace("Artifacts: Minor", "Artifacts: Severe").replace("Good", "Excellent")
    longest_rubric = longest_rubric.replace("Sharpness: High", "Sharpness: Medium")
    assert accepts(compiler, tokenizer, grammars.rubric.ebnf, longest_rubric)
    assert grammars.rubric.max_bytes == len(longest_rubric)


def test_default_bounds_fit_the_default_token_budget():
    from tooliqa_agent.types import SamplingConfig

    toolkit = make_toolkit("both")
    defaults = build_grammars([toolkit.tool(name).schema() for name in toolkit.names])
    assert max(g.max_bytes for g in vars(defaults).values()) < SamplingConfig().max_new_tokens


def test_coordinates_and_toolkits_come_from_config(compiler, tokenizer):
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_tools import MagnifierConfig

    call = '<thinking>z</thinking><tool_call>\n{{"name": "magnifier", "arguments": {{"bbox_2d": {}}}}}\n</tool_call>'
    unit = ProtocolConfig(tools="magnifier", magnifier=MagnifierConfig(coords="unit"))
    ebnf = turn_grammar("action", unit.make_toolkit(), unit, CONFIG)
    assert accepts(compiler, tokenizer, ebnf, call.format("[0.1, 0.25, 0.5, 1]"))
    assert not accepts(compiler, tokenizer, ebnf, call.format("[0.1, 0.25, 0.5, 2]"))
    pixel = ProtocolConfig(tools="magnifier", magnifier=MagnifierConfig(coords="pixel"))
    ebnf = turn_grammar("action", pixel.make_toolkit(), pixel, CONFIG)
    assert accepts(compiler, tokenizer, ebnf, call.format("[10, 20, 4000, 3000]"))
    assert not accepts(compiler, tokenizer, ebnf, call.format("[10, 20, 4000.5, 3000]"))
    gamma_call = (
        '<thinking>z</thinking><tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "darken"}}\n</tool_call>'
    )
    assert not accepts(compiler, tokenizer, ebnf, gamma_call)  # the magnifier-only toolkit has no gamma corrector
    none = ProtocolConfig(tools="none")
    assert turn_grammar("action", none.make_toolkit(), none, CONFIG) == turn_grammar(
        "final", none.make_toolkit(), none, CONFIG
    )


def test_schemas_without_a_bounded_grammar_are_typed_errors():
    free = ToolSchema("t", "d", (ParamSpec("text", "string", "free text"),))
    with pytest.raises(GrammarError, match="t: text: a free string"):
        build_grammars([free])
    unsized = ToolSchema("t", "d", (ParamSpec("box", "array", "a box", range=(0, 1)),))
    with pytest.raises(GrammarError, match="t: box: an array needs a fixed length"):
        build_grammars([unsized])
    with pytest.raises(GrammarError, match="max_thinking_chars"):
        GrammarConfig(max_thinking_chars=-1)
    with pytest.raises(GrammarError, match="max_note_chars"):
        GrammarConfig(max_note_chars=-1)


def test_zero_thinking_chars_forces_empty_thinking(compiler, tokenizer):
    from tooliqa_agent.protocol import ProtocolConfig

    empty = GrammarConfig(max_thinking_chars=0, score_decimals=0)
    none = ProtocolConfig(tools="none")
    ebnf = turn_grammar("final", none.make_toolkit(), none, empty)
    assert accepts(compiler, tokenizer, ebnf, "<thinking></thinking> <answer>3</answer>")
    assert not accepts(compiler, tokenizer, ebnf, "<thinking>a</thinking> <answer>3</answer>")
    assert not accepts(compiler, tokenizer, ebnf, "<thinking></thinking> <answer>3.5</answer>")


def _allowed(matcher, vocab: int) -> set[int]:
    bitmask = xgr.allocate_token_bitmask(1, vocab)
    matcher.fill_next_token_bitmask(bitmask)
    return {t for t in range(vocab) if bitmask[0, t // 32] >> (t % 32) & 1}


def test_logits_processor_masks_each_row_to_its_own_grammar(tokenizer, tiny_model, grammars):
    processor, model = tiny_model
    factory = XGrammarConstraintFactory(processor.tokenizer, model.config)
    vocab = factory.vocab_size
    from tooliqa_agent.types import GenerationRequest

    requests = [
        GenerationRequest(prompt_ids=(1, 2), images=(), grammar=grammars.final.ebnf),
        GenerationRequest(prompt_ids=(1, 2), images=(), grammar=None),
        GenerationRequest(prompt_ids=(1, 2), images=(), grammar=grammars.rubric.ebnf),
    ]
    assert factory([requests[1]], 2) is None  # nothing constrained: no processor at all
    logits_processor = factory(requests, prompt_length=2)
    assert isinstance(logits_processor, GrammarLogitsProcessor)
    reference = [factory.matcher(grammars.final.ebnf), None, factory.matcher(grammars.rubric.ebnf)]
    ids = torch.tensor([[0, 1], [0, 1], [0, 1]])
    text = tokenizer.encode("<thinking>ab</thinking> <answer>2</answer>")
    for step in range(len(text) + 1):
        scores = torch.randn(3, vocab)
        masked = logits_processor(ids, scores.clone())
        for row in (0, 2):
            allowed = _allowed(reference[row], vocab)
            assert set(torch.nonzero(masked[row] > float("-inf")).flatten().tolist()) == allowed
        assert torch.equal(masked[1], scores[1])  # the unconstrained row is untouched
        if step == len(text):
            break
        # row 0 follows a valid final turn; row 2 takes its first allowed token each step
        choice = [text[step], int(scores[1].argmax()), min(_allowed(reference[2], vocab))]
        assert reference[0].accept_token(choice[0]) and reference[2].accept_token(choice[2])
        ids = torch.cat([ids, torch.tensor(choice)[:, None]], 1)
    assert set(torch.nonzero(masked[0] > float("-inf")).flatten().tolist()) == {factory.stop_token_id}
    # a token the grammar refuses (never sampled under the mask) forces that row to stop, not the batch to crash
    bad = tokenizer.convert_tokens_to_ids("<|vision_start|>")
    masked = logits_processor(
        torch.cat([ids, torch.tensor([[factory.stop_token_id], [5], [bad]])], 1), torch.randn(3, vocab)
    )
    assert set(torch.nonzero(masked[2] > float("-inf")).flatten().tolist()) == {factory.stop_token_id}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA masking path needs a GPU")
def test_logits_processor_masks_the_same_on_cuda(tiny_model, grammars):
    processor, model = tiny_model
    factory = XGrammarConstraintFactory(processor.tokenizer, model.config)
    from tooliqa_agent.types import GenerationRequest

    requests = [GenerationRequest(prompt_ids=(1,), images=(), grammar=g) for g in (grammars.rubric.ebnf, None)]
    scores = torch.randn(2, factory.vocab_size)
    ids = torch.tensor([[0], [0]])
    on_cpu = factory(requests, 1)(ids, scores.clone())
    on_gpu = factory(requests, 1)(ids.cuda(), scores.cuda())
    assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), on_cpu)


@pytest.fixture
def one_thread():
    """One intra-op thread: the tiny model's steps are too small to split, and on a busy 2-core machine two
    spinning threads per process made each decoding step ~10× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_untrained_tiny_model_trajectories_all_parse(tiny_model, one_thread):
    """200 trajectories (50 images × 4) of the random tiny model, full protocol, structured decoding: all parse.

    Short prompt texts, thinking/note bounds and one tool round keep it fast: on CPU each decoding step costs
    about (rows × context length), and the tool schemas alone are ~800 tiny-BPE tokens of context.
    """
    from tooliqa_agent.engines.hf import HFEngine
    from tooliqa_agent.prompts import PromptConfig
    from tooliqa_agent.protocol import ProtocolConfig
    from tooliqa_agent.rollout import Agent
    from tooliqa_agent.types import SamplingConfig

    processor, model = tiny_model
    short = GrammarConfig(max_thinking_chars=2, max_note_chars=1)
    prompts = PromptConfig(
        rubric="Rate the five attributes.",
        gate="Call a tool or answer.",
        observation="{description} {remaining} left.",
        failure="Failed: {reason}.",
        final="Answer now.",
    )
    protocol = ProtocolConfig(structured=True, prompts=prompts, max_tool_rounds=1, grammar=short)
    agent = Agent(HFEngine(model, processor), processor, protocol)
    bound = max(g.max_bytes for g in vars(build_grammars([MAGNIFIER, GAMMA], short)).values())
    generator = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8, generator=generator) for _ in range(50)]
    tick = time.perf_counter()
    rows = agent.rollout(images, group_size=4, sampling=SamplingConfig(temperature=1.0, max_new_tokens=bound + 1))
    print(f"200 structured trajectories in {time.perf_counter() - tick:.1f} s")
    trajectories = [t for row in rows for t in row]
    assert len(trajectories) == 200
    assert [t.failure for t in trajectories] == [None] * 200
    assert all(1.0 <= t.score <= 5.0 for t in trajectories)
    toolkit = protocol.make_toolkit()
    for t in trajectories:
        assert t.turns[0].kind == "rubric" and t.turns[0].text.count("\n") >= 6
        for turn in t.turns[1:-1]:  # every middle turn is ONE tool call whose JSON meets its tool's schema
            call = json.loads(re.fullmatch(r"(?s).*<tool_call>\n(.*)\n</tool_call>", turn.text).group(1))
            toolkit.tool(call["name"]).schema().check(call["arguments"])
        assert "<answer>" in t.turns[-1].text and "<tool_call>" not in t.turns[-1].text
    assert sum(t.num_tool_calls for t in trajectories) > 0


def test_every_score_the_grammar_admits_parses_back_exactly(compiler, tokenizer, grammars):
    """The grammar and ``parse_score`` agree: each admitted score reads as its own value; each score the parser reads
    that is written plainly (no sign, leading zero or trailing point; ≤ score_decimals decimals) is admitted."""
    from tooliqa_agent import parse_score

    matcher = xgr.GrammarMatcher(compiler.compile_grammar(grammars.final.ebnf))
    assert matcher.accept_string("<thinking>ok</thinking> <answer>")
    admitted = set()
    candidates = [str(i) for i in range(10)] + [f"{i / 10:.1f}" for i in range(100)]
    candidates += [f"{i / 100:.2f}" for i in range(1000)]
    candidates += ["05", "1.000", "4.999", "-1", "+3", ".5", "5.", "1e0"]
    for score in candidates:
        tokens = tokenizer.encode(score + "</answer>")
        if all(matcher.accept_token(token) for token in tokens) and matcher.is_completed():
            admitted.add(score)
        matcher.reset()
        matcher.accept_string("<thinking>ok</thinking> <answer>")
    parsed = {s for s in candidates if parse_score(f"<answer>{s}</answer>")[0] is not None}
    plain = {s for s in parsed if re.fullmatch(rf"[1-9][0-9]*(\.[0-9]{{1,{CONFIG.score_decimals}}})?", s)}
    assert admitted == plain and len(admitted) == 5 + 41 + 401
    assert all(parse_score(f"<answer>{s}</answer>") == (float(s), None) for s in admitted)


def test_single_turn_grammar_uses_the_prompts_reasoning_tag(compiler, tokenizer):
    """VisualQuality-R1's question asks for <think>…</think>: the structured single turn writes that tag."""
    from tooliqa_agent.protocol import ProtocolConfig

    single = ProtocolConfig(tools="none", rubric=False)
    ebnf = turn_grammar("final", single.make_toolkit(), single, CONFIG)
    assert accepts(compiler, tokenizer, ebnf, "<think>sharp</think> <answer>4.25</answer>")
    assert not accepts(compiler, tokenizer, ebnf, "<thinking>sharp</thinking> <answer>4.25</answer>")
    rubric_first = ProtocolConfig(tools="none")  # P0 and the answer prompt ask for <thinking>
    ebnf = turn_grammar("final", rubric_first.make_toolkit(), rubric_first, CONFIG)
    assert accepts(compiler, tokenizer, ebnf, "<thinking>sharp</thinking> <answer>4.25</answer>")
