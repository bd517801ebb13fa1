"""The warm start's scripted actions (``warm_start.actions: each``): every view read equally often on every image.

Left to its own sampling, a random policy reaches some views rarely: the demo's policy called the Gamma Corrector in
a third of its trajectories and chose ``brighten`` in a third of those, so the warm start saw a brightened dark image
a few dozen times and never learned to read one (``benchmarks/demo_tool_value.py``). Here the policy still writes its
own rubric note (its engine samples that turn), and a script takes the gate: trajectory ``t`` of a rollout (row-major
``image · G + sample``) answers at once, or calls one enabled tool with one of the arguments its grammar offers, in
turn over ``t``; after a tool it answers. The choice depends on ``t`` only, never on the image: the warm start still
teaches how to read a score off each view, not when a view helps.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence

from tooliqa_agent.engines.scripted import ScriptedEngine
from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.types import Completion, GenerationRequest, SamplingConfig

__all__ = ["ScriptedActions", "action_menu"]


def _argument_choices(schema, protocol: ProtocolConfig) -> list[dict]:
    """Every argument set the structured grammar lets the model write for one tool's required parameters."""
    per_param = []
    for param in schema.params:
        if not param.required:
            continue
        if param.enum:
            per_param.append([(param.name, choice) for choice in param.enum])
        elif param.type == "array" and param.length == 4 and protocol.grammar.box_choices:
            per_param.append([(param.name, list(box)) for box in protocol.grammar.box_choices])
        else:
            raise ValueError(
                f"warm_start.actions 'each': {schema.name}.{param.name} has no menu to script (needs an enum, or "
                "rollout.protocol.grammar.box_choices for a box)"
            )
    return [dict(choice) for choice in itertools.product(*per_param)]


def action_menu(schemas: Sequence, protocol: ProtocolConfig) -> list[list[str]]:
    """Gate-turn texts by kind: ``[[answer], [tool 1's calls…], [tool 2's calls…], …]`` in the grammar's layout
    (empty thinking, no gap: valid under any ``GrammarConfig``)."""
    grammar = protocol.grammar
    head = f"<{protocol.thinking_tag}></{protocol.thinking_tag}>"
    middle = (grammar.min_score + grammar.max_score) / 2
    score = f"{middle:.{grammar.score_decimals}f}" if grammar.score_decimals else str(int(middle))
    menu = [[f"{head}<answer>{score}</answer>"]]
    for schema in schemas:
        calls = [
            json.dumps({"name": schema.name, "arguments": arguments})
            for arguments in _argument_choices(schema, protocol)
        ]
        menu.append([f"{head}<tool_call>\n{call}\n</tool_call>" for call in calls])
    return menu


class ScriptedActions:
    """An engine whose rubric turns come from the policy's engine and whose gate turns come from :func:`action_menu`:
    trajectory ``t`` takes kind ``t mod K`` (its argument set ``(t div K) mod n``) at its first gate, then answers."""

    def __init__(self, engine, processor, menu: list[list[str]], first_gate: int) -> None:
        self.engine = engine
        self.menu = menu
        self.first_gate = first_gate
        self.scripted = ScriptedEngine(processor, self._reply, device=engine.device)

    @property
    def device(self):
        return self.engine.device

    def _reply(self, request: GenerationRequest) -> str:
        if request.turn > self.first_gate:  # after the tool's view: answer
            return self.menu[0][0]
        kind = self.menu[request.trajectory % len(self.menu)]
        return kind[(request.trajectory // len(self.menu)) % len(kind)]

    def generate(self, requests: Sequence[GenerationRequest], sampling: SamplingConfig) -> list[Completion]:
        own = [r for r in requests if r.kind == "rubric"]
        sampled = iter(self.engine.generate(own, sampling) if own else ())
        scripted = iter(self.scripted.generate([r for r in requests if r.kind != "rubric"], sampling))
        return [next(sampled) if r.kind == "rubric" else next(scripted) for r in requests]
