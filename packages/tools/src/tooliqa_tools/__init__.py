"""tooliqa_tools."""
