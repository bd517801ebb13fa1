"""A deterministic test assessor that computes something real on each image: its sharpness."""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch

from tooliqa_data import AssessedCall, AssessedTurn, Assessment, IQAItem, encode_png


def sharpness(image: torch.Tensor) -> float:
    """Mean absolute Laplacian of the luma: a real no-reference sharpness measure (higher = sharper)."""
    gray = image.float().mean(0)
    lap = 4 * gray[1:-1, 1:-1] - gray[:-2, 1:-1] - gray[2:, 1:-1] - gray[1:-1, :-2] - gray[1:-1, 2:]
    return float(lap.abs().mean())


class SharpnessAssessor:
    """Scores by sharpness; optionally "calls" a magnifier on the centre of blurry images, like an agent would.

    With ``tools=True``: images with sharpness under ``threshold`` get one magnifier call (a real crop, returned as a
    tool view) and every fifth image a failing gamma call, so the tool tables have every category to show.
    """

    def __init__(self, tools: bool = False, threshold: float = 6.0) -> None:
        self.tools, self.threshold = tools, threshold
        self.calls = 0
        self.seen: list[str] = []

    def __call__(self, items: Sequence[IQAItem], images: Sequence[torch.Tensor]) -> list[Assessment]:
        self.calls += 1
        results = []
        for item, image in zip(items, images):
            self.seen.append(str(item.image))
            score = sharpness(image)
            calls, turns = [], [AssessedTurn("rubric", f"Sharpness: {score:.2f}")]
            if self.tools and score < self.threshold:
                h, w = image.shape[1:]
                box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)
                calls.append(AssessedCall("magnifier", json.dumps({"bbox_2d": list(box)}), True, box=box))
                turns += [
                    AssessedTurn("action", '<tool_call>{"name": "magnifier"}</tool_call>'),
                    AssessedTurn("tool", "Magnified view.", encode_png(image[:, box[1] : box[3], box[0] : box[2]])),
                ]
            if self.tools and len(self.seen) % 5 == 0:
                calls.append(AssessedCall("gamma_corrector", "{bad", False, error="gamma_corrector: bad JSON"))
                turns.append(AssessedTurn("tool", "Tool call failed: bad JSON."))
            turns.append(AssessedTurn("final", f"<answer>{score:.2f}</answer>"))
            results.append(
                Assessment(score, output_tokens=7 + 5 * len(calls), tool_calls=tuple(calls), turns=tuple(turns))
            )
        return results
