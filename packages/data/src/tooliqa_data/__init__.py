"""tooliqa_data."""
