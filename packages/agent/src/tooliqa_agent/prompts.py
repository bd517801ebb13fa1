"""Every text the protocol shows the model, in one place (SPEC §2; paper Appendix A).

P0 and PG are the paper's verbatim (line breaks restored). P_obs, the failure turn and P_final are not given by the
paper: these are our defaults from SPEC §2. The single-turn question is VisualQuality-R1's (its data prefix + its
"scoring" template, ``reference/paper_repos.md`` b.6), used when tools are none and the rubric is off. All are fields
of :class:`PromptConfig`, so a config overrides any of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

P0 = """You are doing the image quality assessment task. Instead of giving a score immediately, first analyze the image based on the following key dimensions:
1. **Sharpness & Detail**: Is the image blurry or sharp? Are textures well-defined?
2. **Noise & Grain**: Is there visible noise (luminance/color)? Is it distracting?
3. **Artifacts**: Are there compression artifacts (JPEG blocks), ringing, or ghosting?
4. **Exposure & Color**: Is it over/underexposed? Are colors natural?
5. **Saliency Visibility**: Is the MAIN SUBJECT clearly visible? Or is it obscured by shadows/highlights? Focus primarily on the subjects clarity, treating background visibility as secondary.
Output Format:
<thinking> ... </thinking>
<answer>
Sharpness: [Low/Medium/High] - Brief note
Noise: [None/Visible/Severe] - Brief note
Artifacts: [None/Minor/Severe] - Brief note
Exposure: [Poor/Good/Excellent] - Brief note
Saliency Visibility: [Subject Clear/Obscured] - Brief Note
</answer>"""  # noqa: E501 (verbatim prompt)

PG = """Single-Action per Turn: choose EXACTLY ONE
- A) Final answer (1.00 - 5.00)
- B) Tool call
Output one of:
A) Final Answer: <thinking>...</thinking> <answer>...</answer>
B) Tool call: <thinking>...</thinking> <tool_call>...</tool_call>"""

P_FINAL = (
    "No tool calls remain. Give the final answer: <thinking>...</thinking> <answer>score from 1.00 to 5.00</answer>"
)

VQR1_QUESTION = (
    "You are doing the image quality assessment task. Here is the question: What is your overall rating on the quality"
    " of this picture? The rating should be a float between 1 and 5, rounded to two decimal places, with 1 representing"
    " very poor quality and 5 representing excellent quality. First output the thinking process in <think> </think>"
    " tags and then output the final answer with only one score in <answer> </answer> tags."
)


@dataclass(frozen=True)
class PromptConfig:
    """The protocol's texts. ``{…}`` fields are filled by the methods below; everything else is shown verbatim."""

    rubric: str = P0
    """P0: the first user turn (after the image) when the rubric turn is on."""
    gate: str = PG
    """PG: the action gate, shown after the rubric note, after each tool view and after each failed call."""
    observation: str = "{description}\nThis view is supplementary evidence about the original image. Tool calls remaining: {remaining}."
    """P_obs head, shown with a tool view (then PG, or P_final when no call remains)."""
    failure: str = "Tool call failed: {reason}. Nothing was executed."
    """Failure turn head for an invalid or refused call (then PG, or P_final when no call remains)."""
    final: str = P_FINAL
    """P_final: forces the answer after the last tool round (and after a refused extra call)."""
    answer_only: str = "Give the final answer: <thinking>...</thinking> <answer>score from 1.00 to 5.00</answer>"
    """The gate's replacement when tools are none and the rubric is on (nothing to choose: answer)."""
    task: str = "You are doing the image quality assessment task."
    """Opening of the first user turn when the rubric is off and tools are on (then PG follows)."""
    single_turn: str = VQR1_QUESTION
    """The whole first user turn when tools are none and the rubric is off (VisualQuality-R1's protocol)."""
    refused_reason: str = "no tool calls remain"
    """The failure reason for a tool call made when no round is left."""
    single_turn_tag: str = "think"
    """The reasoning tag of the single-turn protocol when ``single_turn`` asks for it (VisualQuality-R1's question asks
    for ``<think>…</think>``): the format reward and the structured grammar then expect it. A question that does not
    mention ``<tag>`` keeps P0/PG's ``<thinking>``."""

    def __post_init__(self) -> None:
        tag = self.single_turn_tag
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", tag) or tag in ("answer", "tool_call"):
            raise ValueError(f"PromptConfig.single_turn_tag must be a tag name (not answer/tool_call), got {tag!r}")

    def thinking_tag(self, rubric: bool, tools: bool) -> str:
        """The reasoning tag the first user turn asks the assistant turns to open with (``thinking`` but for a
        single-turn question that asks for ``single_turn_tag``)."""
        asked = not (rubric or tools) and f"<{self.single_turn_tag}>" in self.single_turn
        return self.single_turn_tag if asked else "thinking"

    def first_user(self, rubric: bool, tools: bool) -> str:
        """Text of the first user turn (it follows the image)."""
        if rubric:
            return self.rubric
        return f"{self.task}\n{self.gate}" if tools else self.single_turn

    def after_rubric(self, tools: bool) -> str:
        """Text of the user turn after the rubric note."""
        return self.gate if tools else self.answer_only

    def then(self, remaining: int) -> str:
        """What follows a tool view or a failure: PG while calls remain, else P_final."""
        return self.gate if remaining > 0 else self.final

    def observation_text(self, description: str, remaining: int) -> str:
        """P_obs for a tool view, ``remaining`` = tool calls still allowed."""
        return self.observation.format(description=description, remaining=remaining) + "\n" + self.then(remaining)

    def failure_text(self, reason: str, remaining: int) -> str:
        """The text-only failure turn for an invalid or refused call."""
        return self.failure.format(reason=reason.rstrip(". ")) + "\n" + self.then(remaining)
