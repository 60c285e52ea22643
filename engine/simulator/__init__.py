"""The embedded simulated LLM server (Ollama or llama.cpp protocol) and its timing model."""
