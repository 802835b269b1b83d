"""Run an untrusted Python program under limits: bubblewrap namespaces, rlimits, cgroups, a wall clock.

`run_sandboxed(program, stdin, limits)` runs `python3 -I -S -B` (isolated mode, no site-packages, no .pyc
writes; the standard library still imports) on `program` and returns a `SandboxResult`. Layers, outermost
first (each one is there because the one below can be escaped alone, see docs in PLATFORM.md):

1. cgroup (v1 `pids`+`memory`, or v2 `pids.max`/`memory.max`) joined by a `sh` shim *before* exec, so every
   descendant is counted: caps processes (RLIMIT_NPROC does not bind root) and total memory incl. tmpfs.
2. `prlimit`: RLIMIT_AS (soft = hard, else a child raises it), RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE,
   RLIMIT_CORE = 0, and RLIMIT_NPROC as a backstop when no pids cgroup is usable.
3. bubblewrap: new net/pid/ipc/uts/cgroup namespaces (only `lo` exists), `--new-session` (TIOCSTI),
   `--die-with-parent`, a root made of read-only binds of the system dirs and the Python prefix, a size-capped
   tmpfs `/tmp` as the only writable place, an empty environment. As root, bwrap keeps CAP_SETUID/SETGID
   only so that `setpriv` can drop to uid/gid 65534 with no capabilities and no_new_privs.
4. The parent: a wall-clock deadline and an output cap; on expiry it SIGKILLs the process group, which
   takes down bwrap's PID namespace (so double-forked daemons die too) and kills the cgroup's members.

Without bubblewrap (missing, or it cannot run) a weaker fallback runs the same rlimits and cgroup, a new
session, an empty environment, a scratch cwd, `unshare --net --pid` when that works, and uid 65534 when root;
it logs a warning once, since the whole file system stays readable (where uid 65534 may read).

A failure of the sandbox itself (bwrap cannot set up, Python never started) raises `SandboxError`, an
`Unscorable`: the program is not to blame. Everything a program does after it started is its own result.
"""

from __future__ import annotations

import functools
import logging
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ponder.rewards.base import Unscorable

log = logging.getLogger(__name__)

NOBODY = 65534
CGROUP_ROOT = Path("/sys/fs/cgroup")
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
SANDBOX_PROGRAM = "/sandbox/main.py"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}

# Runs inside the sandbox before the program: once the program is read, it reports "started" on a pipe
# only the launcher holds, then closes it, so a program cannot fake an infrastructure failure (which
# would be scored NaN instead of 0).
LAUNCHER = (
    "import os, sys\n"
    "with open(sys.argv[2], encoding='utf-8') as f: src = f.read()\n"
    "fd = int(sys.argv[1]); os.write(fd, b'1'); os.close(fd)\n"
    "sys.argv = ['main.py']\n"
    "del fd, f\n"
    "exec(compile(src, 'main.py', 'exec'), {'__name__': '__main__', '__builtins__': __builtins__})\n"
)


class SandboxError(Unscorable):
    """The sandbox itself failed (not the program): the sample cannot be scored."""


@dataclass(frozen=True)
class Limits:
    """Resource caps for one run. Memory caps are per process (RLIMIT_AS) and per sandbox (cgroup)."""

    wall_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 512
    max_pids: int = 32
    output_bytes: int = 1 << 20
    scratch_mb: int = 32

    def __post_init__(self) -> None:
        for key in ("wall_s", "cpu_s", "memory_mb", "max_pids", "output_bytes", "scratch_mb"):
            if getattr(self, key) <= 0:
                raise ValueError(f"Limits.{key} must be > 0, got {getattr(self, key)!r}")


@dataclass(frozen=True)
class SandboxResult:
    """What one run did. `exit_code` is None when the parent killed it (`killed` says why)."""

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    killed: str | None  # "wall_time", "output_limit", "cpu_time", "memory", "signal N" or None
    wall_s: float
    truncated: bool
    backend: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.killed is None


class Cgroup:
    """One sandbox's cgroup(s): created with limits, joined by the launcher shim, killed, removed."""

    def __init__(self, version: str, limits: Limits) -> None:
        name = f"ponder-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        memory = (limits.memory_mb + limits.scratch_mb) << 20
        pids = limits.max_pids + 3  # + sh/bwrap outer, bwrap's pid-1 init, setpriv->python
        if version == "v1":
            self.dirs = [CGROUP_ROOT / "pids" / name, CGROUP_ROOT / "memory" / name]
            settings = {
                "pids.max": pids,
                "memory.limit_in_bytes": memory,
                "memory.memsw.limit_in_bytes": memory,
            }
        else:
            self.dirs = [CGROUP_ROOT / "ponder-sandbox" / name]
            settings = {"pids.max": pids, "memory.max": memory, "memory.swap.max": 0}
        self.version = version
        for d in self.dirs:
            d.mkdir()
        for key, value in settings.items():
            for d in self.dirs:
                if (d / key).exists():
                    (d / key).write_text(str(value))

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except OSError:
                pass
        return found

    def kill(self) -> None:
        kill_file = self.dirs[0] / "cgroup.kill"  # v2, Linux >= 5.14: atomic, no fork race
        if self.version == "v2" and kill_file.exists():
            kill_file.write_text("1")
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def oom_killed(self) -> bool:
        d = self.dirs[-1]
        for name in ("memory.events", "memory.oom_control"):
            try:
                lines = (d / name).read_text().splitlines()
            except OSError:
                continue
            counts = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
            return int(counts.get("oom_kill", "0")) > 0
        return False

    def destroy(self) -> None:
        """Kill until empty (a fork in flight can add a member), then rmdir; warn if anything stays."""
        for _ in range(200):
            self.kill()
            if not self.pids():
                break
            time.sleep(0.01)
        for d in self.dirs:
            try:
                d.rmdir()
            except OSError as err:
                log.warning("sandbox cgroup %s not removed (%s): processes may be left behind", d, err)


def detect_cgroup() -> str | None:
    """Cgroup version "v1" or "v2" when a pids+memory group can be made here, else None (warns)."""
    if (CGROUP_ROOT / "cgroup.controllers").exists():
        version = "v2"
        try:
            _enable_v2_controllers()
        except OSError as err:
            log.warning("cgroup v2 found but not writable (%s)", err)
            version = None
    elif (CGROUP_ROOT / "pids").is_dir() and (CGROUP_ROOT / "memory").is_dir():
        version = "v1"
    else:
        version = None
    if version is not None:
        try:
            Cgroup(version, Limits()).destroy()
            return version
        except OSError as err:
            log.warning("cgroup %s present but a sandbox group cannot be created (%s)", version, err)
    log.warning(
        "no usable cgroup (v1 pids+memory or v2): sandbox process count relies on RLIMIT_NPROC as uid %d "
        "(shared by parallel runs) and memory on RLIMIT_AS per process",
        NOBODY,
    )
    return None


def _enable_v2_controllers() -> None:
    """Delegate pids+memory to /sys/fs/cgroup/ponder-sandbox (fails when the root holds processes)."""
    parent = CGROUP_ROOT / "ponder-sandbox"
    if "pids" not in (CGROUP_ROOT / "cgroup.subtree_control").read_text():
        (CGROUP_ROOT / "cgroup.subtree_control").write_text("+pids +memory")
    parent.mkdir(exist_ok=True)
    (parent / "cgroup.subtree_control").write_text("+pids +memory")


class Sandbox:
    """Chooses the backend once (bwrap, else the weaker fallback) and runs programs with it.

    backend: "auto" (bwrap if it works, else fallback with a warning), "bwrap" (error if it does not
    work) or "fallback". cgroup: "auto" (detect v1/v2) or "none".
    """

    def __init__(self, backend: str = "auto", cgroup: str = "auto") -> None:
        if backend not in ("auto", "bwrap", "fallback") or cgroup not in ("auto", "none"):
            raise ValueError(
                f"backend must be auto|bwrap|fallback and cgroup auto|none, got {backend}, {cgroup}"
            )
        self.as_root = os.geteuid() == 0
        self.python = os.path.realpath(sys.executable)
        self.cgroup = detect_cgroup() if cgroup == "auto" else None
        self.unshare = self._probe_unshare()
        if backend != "fallback" and self._bwrap_works():
            self.backend = "bwrap"
        elif backend == "bwrap":
            raise SandboxError("bubblewrap requested but `bwrap` is missing or cannot run here")
        else:
            self.backend = "fallback"
            log.warning(
                "sandbox: bubblewrap unavailable, using the WEAKER fallback (no file-system isolation; %s)",
                "net/pid namespaces via unshare" if self.unshare else "NO network or pid isolation",
            )

    def run(self, program: str, stdin: str = "", limits: Limits | None = None) -> SandboxResult:
        """Run `program` with `stdin` (a file: EOF after it, never blocks) under `limits`."""
        limits = limits or Limits()
        scratch = Path(tempfile.mkdtemp(prefix="ponder-sbx-"))
        cgroup = None
        try:
            (scratch / "main.py").write_text(program, encoding="utf-8")
            (scratch / "main.py").chmod(0o644)
            (scratch / "stdin").write_text(stdin, encoding="utf-8")
            try:
                cgroup = Cgroup(self.cgroup, limits) if self.cgroup else None
            except OSError as err:
                raise SandboxError(f"cannot create the sandbox cgroup: {err}") from err
            return self._execute(scratch, limits, cgroup)
        finally:
            if cgroup is not None:
                cgroup.destroy()
            shutil.rmtree(scratch, ignore_errors=True)

    def _execute(self, scratch: Path, limits: Limits, cgroup: Cgroup | None) -> SandboxResult:
        status_r, status_w = os.pipe()
        argv = self._argv(scratch, limits, status_w, cgroup)
        cwd = scratch / "work"
        if self.backend == "fallback":
            cwd.mkdir()
            scratch.chmod(0o711)  # uid 65534 may reach main.py and work/, not list the dir
            if self.as_root:
                os.chown(cwd, NOBODY, NOBODY)
        start = time.monotonic()
        try:
            with open(scratch / "stdin", "rb") as stdin:
                proc = subprocess.Popen(
                    argv, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV,
                    cwd=cwd if self.backend == "fallback" else scratch, pass_fds=(status_w,),
                    start_new_session=True,
                )  # fmt: skip
        except OSError as err:
            os.close(status_r)
            raise SandboxError(f"cannot start the sandbox ({argv[0]}): {err}") from err
        finally:
            os.close(status_w)
        try:
            out, err, started, killed = _pump(proc, status_r, limits, start + limits.wall_s)
        finally:
            _kill(proc, cgroup)
            proc.wait()
            for f in (proc.stdout, proc.stderr):
                f.close()
            os.close(status_r)
        wall = time.monotonic() - start
        if not started:
            raise SandboxError(f"sandboxed Python never started (rc={proc.returncode}): {err[-2000:]!r}")
        return _result(proc.returncode, out, err, killed, wall, limits, cgroup, self.backend)

    def _argv(self, scratch: Path, limits: Limits, status_fd: int, cgroup: Cgroup | None) -> list[str]:
        if self.backend == "bwrap":
            prog = SANDBOX_PROGRAM
            inner = self._bwrap_prefix(scratch / "main.py", limits)
        else:
            prog = str(scratch / "main.py")
            inner = list(self.unshare)
        if self.as_root:
            inner += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
            inner += ["--inh-caps=-all", "--no-new-privs", "--"]
        inner += [self.python, "-I", "-S", "-B", "-c", LAUNCHER, str(status_fd), prog]
        return _cgroup_shim(cgroup) + _prlimit(limits, nproc=cgroup is None) + inner

    def _bwrap_prefix(self, program_file: Path, limits: Limits) -> list[str]:
        argv = ["bwrap", "--die-with-parent", "--new-session", "--unshare-net", "--unshare-pid"]
        argv += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--hostname", "sandbox"]
        if not self.as_root:
            argv.append("--unshare-user")  # unprivileged bwrap needs it; as root we drop uid instead
        for d in SYSTEM_DIRS:
            if os.path.islink(d):
                argv += ["--symlink", os.readlink(d), d]
            elif os.path.isdir(d):
                argv += ["--ro-bind", d, d]
        for d in sorted({sys.base_prefix, os.path.dirname(os.path.dirname(self.python))}):
            if not any(d == s or d.startswith(s + "/") for s in SYSTEM_DIRS):
                argv += ["--ro-bind", d, d]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--perms", "1777", "--size", str(limits.scratch_mb << 20), "--tmpfs", "/tmp"]
        argv += ["--perms", "0755", "--dir", os.path.dirname(SANDBOX_PROGRAM)]  # bwrap's default: 0700
        argv += ["--ro-bind", str(program_file), SANDBOX_PROGRAM, "--chdir", "/tmp", "--clearenv"]
        for key, value in ENV.items():
            argv += ["--setenv", key, value]
        if self.as_root:
            argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]  # for setpriv, then dropped
        return argv + ["--"]

    def _bwrap_works(self) -> bool:
        if shutil.which("bwrap") is None:
            return False
        self.backend = "bwrap"
        try:
            result = self.run("print('ok')", limits=Limits(wall_s=20))
        except SandboxError as err:
            log.warning("bubblewrap is installed but cannot run here: %s", err)
            return False
        return result.ok and result.stdout.strip() == "ok"

    def _probe_unshare(self) -> list[str]:
        """`unshare` namespace flags for the fallback, or [] when unshare cannot run here."""
        argv = ["unshare", "--net", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]
        if not self.as_root:
            argv.insert(1, "--user")
        try:
            ok = subprocess.run(argv + ["true"], capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            ok = False
        return argv if ok else []


def _cgroup_shim(cgroup: Cgroup | None) -> list[str]:
    """`sh` that moves itself into the cgroup(s), then execs the rest: no fork escapes the count."""
    if cgroup is None:
        return []
    script = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'
    return ["/bin/sh", "-c", script, "sh", *cgroup.procs_files, "--"]


def _prlimit(limits: Limits, nproc: bool) -> list[str]:
    memory = limits.memory_mb << 20
    argv = ["prlimit", f"--as={memory}:{memory}", f"--cpu={limits.cpu_s}:{limits.cpu_s + 1}"]
    argv += [f"--fsize={limits.scratch_mb << 20}", "--nofile=256:256", "--core=0:0"]
    if nproc:  # binds only a non-root uid, and counts all of that uid's processes (parallel runs share it)
        argv.append(f"--nproc={limits.max_pids}:{limits.max_pids}")
    return argv + ["--"]


def _pump(
    proc: subprocess.Popen, status_fd: int, limits: Limits, deadline: float
) -> tuple[bytes, bytes, bool, str | None]:
    """Read stdout/stderr (each capped) and the started flag until exit, the deadline or the cap."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, "stdout")
    sel.register(proc.stderr, selectors.EVENT_READ, "stderr")
    sel.register(status_fd, selectors.EVENT_READ, "status")
    bufs = {"stdout": bytearray(), "stderr": bytearray(), "status": bytearray()}
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return bytes(bufs["stdout"]), bytes(bufs["stderr"]), bool(bufs["status"]), "wall_time"
            for key, _ in sel.select(remaining):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fileobj)
                    continue
                buf = bufs[key.data]
                room = limits.output_bytes - len(buf)
                buf += data[:room]
                if len(data) > room:
                    return bytes(bufs["stdout"]), bytes(bufs["stderr"]), bool(bufs["status"]), "output_limit"
    finally:
        sel.close()
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        killed = None
    except subprocess.TimeoutExpired:
        killed = "wall_time"
    return bytes(bufs["stdout"]), bytes(bufs["stderr"]), bool(bufs["status"]), killed


def _kill(proc: subprocess.Popen, cgroup: Cgroup | None) -> None:
    """SIGKILL the session's process group (bwrap: its PID namespace goes with it) and the cgroup."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if cgroup is not None:
        cgroup.kill()


def _result(
    rc: int, out: bytes, err: bytes, killed: str | None, wall: float, limits: Limits, cgroup: Cgroup | None,
    backend: str,
) -> SandboxResult:  # fmt: skip
    if killed is None:
        sig = -rc if rc < 0 else rc - 128 if rc > 128 else 0  # bwrap reports a signal as 128 + N
        if sig == signal.SIGXCPU:
            killed = "cpu_time"
        elif sig == signal.SIGKILL and cgroup is not None and cgroup.oom_killed():
            killed = "memory"
        elif sig:
            killed = f"signal {sig}"  # SIGKILL here is often RLIMIT_CPU's hard limit
    return SandboxResult(
        exit_code=None if killed else rc,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=killed == "wall_time",
        killed=killed,
        wall_s=wall,
        truncated=killed == "output_limit",
        backend=backend,
    )


@functools.lru_cache(maxsize=1)
def default_sandbox() -> Sandbox:
    """The process-wide Sandbox (backend chosen, and any weakness warned about, once)."""
    return Sandbox()


def run_sandboxed(program: str, stdin: str = "", limits: Limits | None = None) -> SandboxResult:
    """Run `program` in the default sandbox; see the module docstring for what holds."""
    return default_sandbox().run(program, stdin, limits)


def run_many(
    programs: Sequence[str],
    stdins: Sequence[str] | None = None,
    limits: Limits | None = None,
    workers: int = 2,
) -> list[SandboxResult]:
    """Run programs in parallel (threads, each waiting on its own subprocess); results in input order."""
    stdins = list(stdins) if stdins is not None else [""] * len(programs)
    if len(stdins) != len(programs):
        raise ValueError(f"{len(programs)} programs but {len(stdins)} stdins")
    sandbox = default_sandbox()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(
            pool.map(lambda ps: sandbox.run(ps[0], ps[1], limits), zip(programs, stdins, strict=True))
        )
