"""Engines by name. Each entry is imported only when chosen, so ``vllm`` is never imported unless asked for.

Every engine class implements :class:`tooliqa_agent.types.Engine` and a constructor hook
``from_config(config: EngineConfig, model=None, processor=None, **options) -> Engine``.
"""

from __future__ import annotations

import importlib

from tooliqa_agent.types import Engine, EngineConfig

ENGINES: dict[str, str] = {
    "hf": "tooliqa_agent.engines.hf:HFEngine",
    "vllm": "tooliqa_agent.engines.vllm:VLLMEngine",
    "scripted": "tooliqa_agent.engines.scripted:ScriptedEngine",
}
"""Engine name → ``module:Class`` (imported lazily by :func:`engine_class`)."""


def engine_class(name: str) -> type:
    """The engine class registered under ``name``; a clear error for an unknown name or a missing extra."""
    if name not in ENGINES:
        raise ValueError(f"EngineConfig.name: unknown engine {name!r}; choose one of {sorted(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"engine {name!r} needs an optional dependency ({err}); for vllm: uv sync --extra vllm"
        ) from err
    return getattr(module, class_name)


def make_engine(config: EngineConfig, model=None, processor=None, **options) -> Engine:
    """Build the engine ``config.name``: pass a loaded ``model``/``processor`` to share them (hf), else it loads
    ``config.model``. Engine-specific ``options`` (e.g. the scripted engine's replies) go to its ``from_config``."""
    return engine_class(config.name).from_config(config, model=model, processor=processor, **options)


__all__ = ["ENGINES", "engine_class", "make_engine"]
