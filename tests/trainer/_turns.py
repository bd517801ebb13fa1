"""Scripted assistant turns of the demo's protocol shared by the trainer tests (rubric levels with one-letter notes,
``GrammarConfig(max_note_chars=1)``)."""

RUBRIC = (
    "<thinking></thinking>\n<answer>\nSharpness: High - a\nNoise: None - b\nArtifacts: None - c\nExposure: Good - d\n"
    "Saliency Visibility: Subject Clear - e\n</answer>"
)
MAGNIFY = '<thinking></thinking>\n<tool_call>\n{"name": "magnifier", "arguments": {"bbox_2d": [0, 0, 500, 500]}}\n</tool_call>'
GAMMA = (
    '<thinking></thinking>\n<tool_call>\n{"name": "gamma_corrector", "arguments": {"mode": "brighten"}}\n</tool_call>'
)
