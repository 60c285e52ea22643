"""What a finished run means (engine/report/): the timeline, comparisons, advice."""
