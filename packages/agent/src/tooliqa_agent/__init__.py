"""tooliqa_agent."""
