"""Where the engine keeps shared state: the result cache, single-flight, the history."""
