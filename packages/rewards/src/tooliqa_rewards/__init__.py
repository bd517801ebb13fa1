"""tooliqa_rewards."""
