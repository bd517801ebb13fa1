"""tooliqa_agent: the Tool-IQA assessment protocol as a batched multi-turn rollout over swappable engines.

>>> agent = Agent(make_engine(EngineConfig(name="hf"), model, processor), processor, ProtocolConfig())
>>> trajectories = agent.rollout(images, group_size=4, sampling=SamplingConfig())   # [B][G] Trajectory
"""

from tooliqa_agent.collate import PolicyBatch, collate, vllm_prompt
from tooliqa_agent.engines import ENGINES, make_engine
from tooliqa_agent.prompts import PromptConfig
from tooliqa_agent.protocol import ProtocolConfig, parse_score
from tooliqa_agent.rollout import Agent
from tooliqa_agent.trajectory import Trajectory, Turn
from tooliqa_agent.types import Completion, Engine, EngineConfig, GenerationRequest, SamplingConfig

__all__ = [
    "ENGINES",
    "Agent",
    "Completion",
    "Engine",
    "EngineConfig",
    "GenerationRequest",
    "PolicyBatch",
    "PromptConfig",
    "ProtocolConfig",
    "SamplingConfig",
    "Trajectory",
    "Turn",
    "collate",
    "make_engine",
    "parse_score",
    "vllm_prompt",
]
