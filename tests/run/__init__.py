"""One analysis (engine/run/): prompts, fan-out, stragglers, warm-ups, pacing."""
