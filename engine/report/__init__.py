"""What a finished run means to a reader: where its seconds went, comparisons, advice."""
