"""One analysis: prompts, the fan-out to the server's slots, stragglers, consolidation."""
