"""What the tests share and are not tests: loopback servers, fakes, the dashboard and the
real components (Redis, Prometheus, llama.cpp, Chromium) they start, and the fixtures over
them, which tests/conftest.py offers to every test module. A test module imports from here,
never from another test module (tests/test_layout.py)."""
