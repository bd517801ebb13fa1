"""The two tools: each pairs its schema with validation (``check`` / ``plan``) and a batched ``execute``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Protocol

import torch

from tooliqa_tools.config import DEFAULT_GAMMA, DEFAULT_MAGNIFIER, GammaConfig, MagnifierConfig
from tooliqa_tools.errors import ToolError
from tooliqa_tools.ops.depth import to_uint8
from tooliqa_tools.ops.gamma import GAMMA_CORRECTOR, gamma_correct_many
from tooliqa_tools.ops.geometry import MAGNIFIER, CropPlan, fit_pixels, from_pixels, plan_crop, read_box
from tooliqa_tools.ops.magnify import render_crops
from tooliqa_tools.ops.resize import resize
from tooliqa_tools.schemas import ParamSpec, ToolSchema
from tooliqa_tools.types import ToolView

_GRIDS = {"qwen1000": (0, 1000), "unit": (0, 1), "pixel": None}
_GRID_WORDS = {
    "qwen1000": "relative coordinates from 0 to 1000 of the original image's width and height",
    "unit": "fractions from 0 to 1 of the original image's width and height",
    "pixel": "pixel coordinates of the original image",
}


class Tool(Protocol):
    """What the toolkit needs from a tool."""

    name: str

    def schema(self) -> ToolSchema:
        """The tool's schema."""
        ...

    def check(self, arguments: object) -> dict[str, object]:
        """Checked arguments (everything that does not need the image); raises ``ToolError``."""
        ...

    def plan(self, arguments: Mapping[str, object], height: int, width: int) -> object:
        """The per-call plan for a ``height × width`` original; raises ``ToolError``."""
        ...

    def execute(self, originals: Sequence[torch.Tensor], plans: Sequence[object]) -> list[ToolView]:
        """uint8 views of uint8 or uint16 ``[3, H_i, W_i]`` originals, one per plan, batched where shapes allow."""
        ...


class Magnifier:
    """Crop a box of the original and upscale it (SPEC §3)."""

    name = MAGNIFIER

    def __init__(self, config: MagnifierConfig = DEFAULT_MAGNIFIER) -> None:
        self.config = config

    def schema(self) -> ToolSchema:
        grid = _GRIDS[self.config.coords]
        return ToolSchema(
            name=self.name,
            description=(
                "Crop a region of the original image and show it enlarged, to inspect fine detail "
                "such as texture, blur, noise and compression artifacts. Always crops from the original image."
            ),
            params=(
                ParamSpec(
                    name="bbox_2d",
                    type="array",
                    length=4,
                    range=grid,
                    description=(
                        f"The region as [x1, y1, x2, y2], (x1, y1) its top-left and (x2, y2) its bottom-right "
                        f"corner, in {_GRID_WORDS[self.config.coords]}."
                    ),
                ),
            ),
        )

    def check(self, arguments: object) -> dict[str, object]:
        checked = self.schema().check(arguments)
        read_box(checked["bbox_2d"])
        return checked

    def plan(self, arguments: Mapping[str, object], height: int, width: int) -> CropPlan:
        return plan_crop(arguments["bbox_2d"], height, width, self.config)

    def execute(self, originals: Sequence[torch.Tensor], plans: Sequence[CropPlan]) -> list[ToolView]:
        views = render_crops([to_uint8(original) for original in originals], plans)  # depth adds nothing to a crop
        out = []
        for original, plan, view in zip(originals, plans, views):
            region = from_pixels(plan.box, original.shape[-2], original.shape[-1], self.config.coords)
            description = f"Magnified view of region [{', '.join(str(v) for v in region)}] of the original image."
            out.append(ToolView(image=view, tool=self.name, box=plan.box, gamma=None, description=description))
        return out


class GammaCorrector:
    """I_out = I_in^γ on the original image: "brighten" (γ < 1) or "darken" (γ > 1), optional explicit γ."""

    name = GAMMA_CORRECTOR

    def __init__(self, config: GammaConfig = DEFAULT_GAMMA) -> None:
        self.config = config

    def schema(self) -> ToolSchema:
        config = self.config
        return ToolSchema(
            name=self.name,
            description=(
                "Re-map the original image's intensities with I_out = I_in^gamma on [0, 1] to "
                f"reveal detail hidden in dark or bright regions. 'brighten' (gamma = {config.brighten:g}) lifts "
                f"shadows; 'darken' (gamma = {config.darken:g}) recovers highlights."
            ),
            params=(
                ParamSpec(
                    name="mode",
                    type="string",
                    enum=("brighten", "darken"),
                    description="'brighten' for dark or low-contrast images, 'darken' for bright or washed-out ones.",
                ),
                ParamSpec(
                    name="gamma",
                    type="number",
                    range=(config.min_gamma, config.max_gamma),
                    required=False,
                    description="Optional explicit gamma: below 1 to brighten, above 1 to darken.",
                ),
            ),
        )

    def check(self, arguments: object) -> dict[str, object]:
        checked = self.schema().check(arguments)
        gamma = checked.get("gamma")
        if gamma is not None:
            mode = checked["mode"]
            if mode == "brighten" and not gamma < 1:
                raise ToolError(f"{self.name}: mode 'brighten' needs gamma < 1, got {gamma:g}", tool=self.name)
            if mode == "darken" and not gamma > 1:
                raise ToolError(f"{self.name}: mode 'darken' needs gamma > 1, got {gamma:g}", tool=self.name)
        return checked

    def plan(self, arguments: Mapping[str, object], height: int, width: int) -> float:
        default = self.config.brighten if arguments["mode"] == "brighten" else self.config.darken
        return float(arguments.get("gamma", default))

    def _view_size(self, height: int, width: int) -> tuple[int, int]:
        config = self.config
        return fit_pixels(height, width, config.min_pixels, config.max_pixels, config.multiple)

    def execute(self, originals: Sequence[torch.Tensor], plans: Sequence[float]) -> list[ToolView]:
        # γ acts on the original's pixels (SPEC §3), all 16 bits of a 16-bit one; the corrected image is then sized
        # into the pixel bounds, in one resize, exactly as the processor would size it (so it is never resized again).
        views = gamma_correct_many(originals, plans)
        groups: dict[tuple, list[int]] = defaultdict(list)
        for index, view in enumerate(views):
            size = self._view_size(*view.shape[-2:])
            if size != tuple(view.shape[-2:]):
                groups[(tuple(view.shape), size, view.device)].append(index)
        for (_, size, _), indices in groups.items():
            for index, resized in zip(indices, resize([views[i] for i in indices], size).unbind(0)):
                views[index] = resized
        out = []
        for gamma, view in zip(plans, views):
            effect = "brightened" if gamma < 1 else "darkened"
            description = f"Gamma-corrected view (γ = {gamma:g}, {effect}) of the original image."
            out.append(ToolView(image=view, tool=self.name, box=None, gamma=gamma, description=description))
        return out
