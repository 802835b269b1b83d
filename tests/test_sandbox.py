"""The sandbox against hostile programs: each is contained, fails within its limits, leaves no process.

Run (as root, as in CI): python -m pytest -q tests/test_sandbox.py
"""

import os
import resource
import shutil
import socket
import time
from pathlib import Path

import pytest

from ponder.rewards.base import Unscorable
from ponder.rewards.sandbox import Limits, Sandbox, SandboxError, default_sandbox, run_many, run_sandboxed

MARKER = "ponder-sandbox-test-marker"
FAST = Limits(wall_s=3.0, cpu_s=1, memory_mb=256, max_pids=16, output_bytes=64 << 10)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="uid drop and leftover checks assume root")


def _sandbox_pids() -> set[int]:
    """Processes that belong to a sandbox: real uid 65534 (the dropped uid) or the marker in argv."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
        if uid == "65534" or MARKER.encode() in cmdline:
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def contained():
    """Around every test: nothing the sandbox started survives, the test process keeps its state."""
    before_pids = _sandbox_pids()
    before_state = (_env(), os.getcwd(), resource.getrlimit(resource.RLIMIT_AS))
    yield
    deadline = time.monotonic() + 3
    while _sandbox_pids() - before_pids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sandbox_pids() - before_pids, "a sandboxed process survived its run"
    assert (_env(), os.getcwd(), resource.getrlimit(resource.RLIMIT_AS)) == before_state


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # pytest sets it per phase


@pytest.fixture(scope="module", params=["bwrap", "fallback"])
def sandbox(request):
    if request.param == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed (apt-get install bubblewrap)")
    return Sandbox(request.param)


def test_runs_python_with_stdin_stdlib_and_an_empty_environment(sandbox):
    os.environ["PONDER_CANARY_ENV"] = "env-secret-1234"
    program = "import json, os, sys\nprint(json.dumps(dict(os.environ)), sys.stdin.read().upper())"
    try:
        result = sandbox.run(program, stdin="hello", limits=FAST)
    finally:
        del os.environ["PONDER_CANARY_ENV"]
    assert result.ok, result
    assert "HELLO" in result.stdout
    assert "PONDER_CANARY_ENV" not in result.stdout and "env-secret" not in result.stdout
    assert result.backend == sandbox.backend and result.wall_s < FAST.wall_s


@needs_root
def test_runs_as_an_unprivileged_uid(sandbox):
    result = sandbox.run("import os; print(os.getuid(), os.getgid(), os.getgroups())", limits=FAST)
    assert result.stdout.split()[:2] == ["65534", "65534"]


def test_exit_code_and_stderr(sandbox):
    result = sandbox.run("import sys; print('oops', file=sys.stderr); sys.exit(3)", limits=FAST)
    assert (result.exit_code, result.killed, result.stderr.strip()) == (3, None, "oops")


def test_a_program_cannot_fake_an_infrastructure_failure(sandbox):
    program = (
        "import sys; print('bwrap: setting up uid map: Permission denied', file=sys.stderr); sys.exit(1)"
    )
    result = sandbox.run(program, limits=FAST)  # scored as the program's failure, not Unscorable
    assert result.exit_code == 1


def test_fork_bomb_is_contained(sandbox):
    start = time.monotonic()
    result = sandbox.run("import os\nwhile True:\n    os.fork()", limits=FAST)
    assert not result.ok
    assert time.monotonic() - start < FAST.wall_s + 3


def test_huge_allocation_fails(sandbox):
    result = sandbox.run("x = bytearray(10 * 2**30)\nprint('allocated')", limits=FAST)
    assert not result.ok and "allocated" not in result.stdout


def test_no_network_to_a_host_loopback_listener(sandbox):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.3)
        port = listener.getsockname()[1]
        program = (
            "import socket\ntry:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=1); print('connected')\n"
            "except OSError as e:\n    print('blocked', e)"
        )
        result = sandbox.run(program, limits=FAST)
        assert "connected" not in result.stdout and "blocked" in result.stdout
        with pytest.raises(socket.timeout):
            listener.accept()


def test_cannot_write_outside_scratch(sandbox, tmp_path):
    os.chmod(tmp_path, 0o777)  # even a world-writable host dir must stay untouched (bwrap hides it)
    targets = [tmp_path / "escaped.txt", Path.cwd() / f"{MARKER}.txt", Path("/tmp") / f"{MARKER}.txt"]
    lines = [f"try:\n    open({str(t)!r}, 'w').write('x')\nexcept OSError:\n    pass" for t in targets]
    sandbox.run("\n".join(lines), limits=FAST)
    escaped = [t for t in targets if t.exists()]
    for t in escaped:
        t.unlink()
    if sandbox.backend == "fallback":  # documented weakness: world-writable host dirs stay writable
        escaped = [t for t in escaped if t.parent == Path.cwd()]
    assert not escaped


def test_cannot_read_host_secrets(sandbox, tmp_path):
    canaries = [tmp_path / "canary.txt", Path.cwd() / f".{MARKER}-canary"]
    for canary in canaries:
        canary.write_text("file-secret-5678")
        canary.chmod(0o600)
    try:
        lines = [f"try:\n    print(open({str(c)!r}).read())\nexcept OSError:\n    pass" for c in canaries]
        result = sandbox.run("\n".join(lines), limits=FAST)
    finally:
        for canary in canaries:
            canary.unlink()
    assert "file-secret" not in result.stdout


def test_busy_loop_is_stopped_by_cpu_or_wall_limit(sandbox):
    result = sandbox.run("while True:\n    pass", limits=FAST)
    assert not result.ok and result.wall_s < FAST.wall_s + 1


def test_sleep_is_stopped_by_the_wall_clock(sandbox):
    result = sandbox.run("import time\ntime.sleep(1e9)", limits=Limits(wall_s=1.0))
    assert result.timed_out and result.killed == "wall_time" and result.exit_code is None
    assert result.wall_s < 2.5


def test_stdin_read_gets_eof_and_a_blocked_read_times_out(sandbox):
    assert sandbox.run("import sys\nprint(repr(sys.stdin.read()))", limits=FAST).stdout.strip() == "''"
    result = sandbox.run("import os\nr, w = os.pipe()\nos.read(r, 1)", limits=Limits(wall_s=1.0))
    assert result.timed_out


def test_huge_integer_power_is_stopped(sandbox):
    result = sandbox.run("x = 10**10**8\nprint('done')", limits=FAST)
    assert not result.ok and "done" not in result.stdout


def test_double_forked_daemon_does_not_survive(sandbox):
    program = f"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', '{MARKER}'])
    os._exit(0)
time.sleep(0.5)
print('parent done')
"""
    result = sandbox.run(program, limits=FAST)
    assert "parent done" in result.stdout  # the daemon was running while the parent exited


def test_output_is_capped(sandbox):
    start = time.monotonic()
    result = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", limits=FAST)
    assert result.killed == "output_limit" and result.truncated
    assert len(result.stdout) <= FAST.output_bytes
    assert time.monotonic() - start < FAST.wall_s


def test_sandbox_failure_raises_unscorable():
    broken = Sandbox("fallback", cgroup="none")
    broken.python = "/nonexistent/python3"
    with pytest.raises(SandboxError) as info:
        broken.run("print(1)", limits=FAST)
    assert isinstance(info.value, Unscorable)


def test_limits_are_validated():
    with pytest.raises(ValueError, match="wall_s"):
        Limits(wall_s=0)


def test_run_many_keeps_order_and_runs_in_parallel():
    programs = [f"import time\ntime.sleep(0.5)\nprint({i})" for i in range(4)]
    default_sandbox()  # backend detection is not part of the timing
    start = time.monotonic()
    results = run_many(programs, limits=FAST, workers=2)
    assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
    assert time.monotonic() - start < 4 * 0.5 + 0.8  # two at a time, not one
    assert run_sandboxed("print(7)").stdout == "7\n"


@needs_root
@pytest.mark.parametrize("backend", ["bwrap", "fallback"])
def test_without_a_cgroup_the_unprivileged_uid_caps_processes(backend):
    if backend == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap not installed")
    program = (
        "import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n"
        "            time.sleep(5)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)"
    )
    result = Sandbox(backend, cgroup="none").run(program, limits=FAST)
    assert 0 < int(result.stdout) < FAST.max_pids  # RLIMIT_NPROC binds uid 65534, unlike root
