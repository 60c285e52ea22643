"""The LLM backends (engine/backends/), against loopback servers and llama.cpp's own."""
