"""tooliqa_trainer."""
