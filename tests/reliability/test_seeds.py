"""Issue 16.2: an image's sampled trajectories are a function of (seed, dataset, image, sample) alone — not of its
batch-mates, their order or the batch size (so neither of a resume nor of the rank that scores it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tooliqa_agent import Agent, ProtocolConfig, SamplingConfig
from tooliqa_agent.engines.hf import HFEngine
from tooliqa_agent.seeding import sample_seed
from tooliqa_data import IQAItem
from tooliqa_trainer import AgentAssessor


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_sample_seed_is_stable_and_distinct():
    assert sample_seed(0, "set/a.png", 0) == sample_seed(0, "set/a.png", 0)  # no per-process salt
    seeds = {
        sample_seed(s, k, g, t) for s in (0, 1) for k in ("set/a.png", "set/b.png") for g in (0, 1) for t in (0, 1)
    }
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)
    assert sample_seed(0, "set/a.png", 0) == 6_010_297_793_469_873_170  # pinned: a change re-seeds every result


def _scores(assessor, items, images, order, sizes):
    out, start = {}, 0
    ordered = [(items[i], images[i]) for i in order]
    for size in sizes:
        chunk = ordered[start : start + size]
        start += size
        for (item, _), a in zip(chunk, assessor([i for i, _ in chunk], [im for _, im in chunk])):
            out[str(item.image)] = (a.score, tuple(turn.text for turn in a.turns), a.other_scores)
    return out


def test_batch_order_and_size_do_not_change_an_images_samples(tiny_model):
    processor, model = tiny_model
    agent = Agent(HFEngine(model, processor), processor, ProtocolConfig(tools="none", rubric=False, structured=True))
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=48, seed=3)
    assessor = AgentAssessor(agent, sampling, samples=2)
    generator = torch.Generator().manual_seed(0)
    sizes = ((3, 64, 64), (3, 96, 64), (3, 64, 128), (3, 80, 80))
    images = [torch.randint(0, 256, size, generator=generator, dtype=torch.uint8) for size in sizes]
    items = [IQAItem(Path(f"/data/set/{i}.png"), 3.0, "set") for i in range(len(images))]
    together = _scores(assessor, items, images, [0, 1, 2, 3], [4])
    apart = _scores(assessor, items, images, [3, 1, 0, 2], [1, 2, 1])
    assert apart == together
    texts = {text for _, turns, _ in together.values() for text in turns}
    assert len(texts) > 1, "sampled trajectories of different images should differ"
    other_seed = _scores(AgentAssessor(agent, SamplingConfig(temperature=1.0, max_new_tokens=48, seed=4), samples=2),
                         items, images, [0, 1, 2, 3], [4])  # fmt: skip
    assert other_seed != together, "the run seed must still matter"
