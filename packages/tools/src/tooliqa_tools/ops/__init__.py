"""Pixel ops of the tools: geometry planning, PIL-compatible resize, magnify, gamma."""
