"""From trajectories to reward inputs: the rank reward's dataset groups (also across ranks) and the format record."""

from __future__ import annotations

import pytest
import torch

from tooliqa_agent.protocol import ProtocolConfig
from tooliqa_agent.trajectory import Trajectory, Turn
from tooliqa_rewards import RewardConfig, RewardInputError, format_reward, rank_reward
from tooliqa_trainer import scoring
from tooliqa_trainer.scoring import dataset_id, format_record, reward_inputs, score_global_batch

RUBRIC = (
    "<thinking>ok</thinking>\n<answer>\nSharpness: High - a\nNoise: None - b\nArtifacts: Minor - c\n"
    "Exposure: Good - d\nSaliency Visibility: Obscured - e\n</answer>"
)


def _trajectory(score: float, final_text: str | None = None, rubric: bool = True) -> Trajectory:
    text = final_text or f"<thinking>fine</thinking> <answer>{score}</answer>"
    turns = ([Turn("rubric", RUBRIC, 1, True)] if rubric else []) + [Turn("final", text, 1, True)]
    empty = torch.zeros(0, dtype=torch.long)
    return Trajectory(
        input_ids=empty,
        loss_mask=empty.bool(),
        old_logprobs=empty.float(),
        mm_token_type_ids=empty,
        images=[],
        image_grid_thw=torch.zeros(0, 3, dtype=torch.long),
        turns=turns,
        score=score,
        failure=None,
        image_index=0,
        sample_index=0,
        prompt_length=0,
    )


SCORES = [[4.5, 4.0], [2.0, 3.5], [3.0, 1.5], [4.0, 2.5]]
MOS = torch.tensor([4.0, 2.0, 1.0, 3.0])
DATASETS = ["koniq", "spaq", "koniq", "spaq"]


def _groups(scores=SCORES):
    return [[_trajectory(s) for s in row] for row in scores]


def test_rank_within_dataset_ranks_each_dataset_apart():
    protocol = ProtocolConfig(tools="none")
    inputs = reward_inputs(_groups(), MOS, protocol, datasets=DATASETS)
    assert inputs.groups.tolist() == [dataset_id(d) for d in DATASETS] and dataset_id("koniq") != dataset_id("spaq")
    within = score_global_batch(inputs, RewardConfig(rank_within_dataset=True)).rank
    scores, valid = torch.tensor(SCORES), torch.ones(4, 2, dtype=torch.bool)
    for rows in ([0, 2], [1, 3]):
        torch.testing.assert_close(within[rows], rank_reward(scores[rows], MOS[rows], valid[rows]))
    across = score_global_batch(inputs, RewardConfig()).rank  # the default: every image of the batch
    torch.testing.assert_close(across, rank_reward(scores, MOS, valid))
    with pytest.raises(RewardInputError, match="rank_within_dataset needs"):
        score_global_batch(reward_inputs(_groups(), MOS, protocol), RewardConfig(rank_within_dataset=True))


def test_dataset_groups_survive_the_gather_across_ranks(monkeypatch):
    """Two ranks with two images each: rank 0's rows of the global batch, grouped by dataset over both ranks."""
    protocol = ProtocolConfig(tools="none")
    mine = reward_inputs(_groups(SCORES[:2]), MOS[:2], protocol, datasets=DATASETS[:2])
    theirs = reward_inputs(_groups(SCORES[2:]), MOS[2:], protocol, datasets=DATASETS[2:])
    distributed = scoring.torch.distributed
    monkeypatch.setattr(distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(distributed, "get_rank", lambda: 0)
    gather = lambda parts, local: parts.__setitem__(slice(None), [local, theirs])  # noqa: E731
    monkeypatch.setattr(distributed, "all_gather_object", gather)
    config = RewardConfig(rank_within_dataset=True)
    got = score_global_batch(mine, config).rank
    whole = reward_inputs(_groups(), MOS, protocol, datasets=DATASETS)
    monkeypatch.setattr(distributed, "is_initialized", lambda: False)
    torch.testing.assert_close(got, score_global_batch(whole, config).rank[:2])


def test_single_turn_format_follows_its_prompt():
    """VisualQuality-R1's question asks for <think>…</think>; a trajectory that does so passes the format check."""
    single = ProtocolConfig(tools="none", rubric=False)
    answer = "<think>Sharp, little noise.</think> <answer>4.20</answer>"
    record = format_record(_trajectory(4.2, answer, rubric=False), single)
    assert record.thinking_tag == "think" and format_reward([record]).reward.tolist() == [1.0]
    with_rubric = format_record(_trajectory(4.2), ProtocolConfig(tools="none"))  # P0 asks for <thinking>
    assert with_rubric.thinking_tag == "thinking" and format_reward([with_rubric]).reward.tolist() == [1.0]
