"""`python -m bench`: Quorum's performance benchmark on the simulated Ollama server.

Every row (P1 … P7, D1) runs in a fresh Python process (`bench.worker`), and both sides
of each comparison run inside that one process, interleaved, so a ratio is never taken
between numbers measured under different machine conditions. The benchmark reports; it
never asserts a target.
"""
