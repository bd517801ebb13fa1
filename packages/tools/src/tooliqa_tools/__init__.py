"""tooliqa_tools: the Magnifier and the Gamma Corrector as batched torch ops, their schemas, a safe tool-call parser.

>>> import torch
>>> from tooliqa_tools import make_toolkit
>>> toolkit = make_toolkit("both")
>>> call = toolkit.parse('<tool_call>{"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 500, 500]}}</tool_call>')
>>> [view] = toolkit.run([torch.zeros(3, 768, 1024, dtype=torch.uint8)], [call])
>>> view.box, tuple(view.image.shape)
((0, 0, 512, 384), (3, 768, 1024))
"""

from tooliqa_tools.config import GammaConfig, MagnifierConfig
from tooliqa_tools.errors import ToolError
from tooliqa_tools.io import image_to_tensor, tensor_to_numpy, tensor_to_pil
from tooliqa_tools.ops.depth import ORIGINAL_DTYPES, gamma_table16, to_uint8
from tooliqa_tools.ops.gamma import gamma_correct, gamma_correct_many, gamma_table
from tooliqa_tools.ops.geometry import CropPlan, plan_crop
from tooliqa_tools.ops.magnify import magnify, render_crops
from tooliqa_tools.ops.resize import resize
from tooliqa_tools.parser import parse_tool_call
from tooliqa_tools.schemas import ParamSpec, ToolSchema
from tooliqa_tools.toolkit import TOOLKITS, Toolkit, make_toolkit
from tooliqa_tools.tools import GammaCorrector, Magnifier, Tool
from tooliqa_tools.types import ToolCall, ToolView

__all__ = [
    "ORIGINAL_DTYPES",
    "TOOLKITS",
    "CropPlan",
    "GammaConfig",
    "GammaCorrector",
    "MagnifierConfig",
    "Magnifier",
    "ParamSpec",
    "Tool",
    "ToolCall",
    "ToolError",
    "ToolSchema",
    "ToolView",
    "Toolkit",
    "gamma_correct",
    "gamma_correct_many",
    "gamma_table",
    "gamma_table16",
    "image_to_tensor",
    "magnify",
    "make_toolkit",
    "parse_tool_call",
    "plan_crop",
    "render_crops",
    "resize",
    "tensor_to_numpy",
    "tensor_to_pil",
    "to_uint8",
]
