"""Run submissions contained, with limits on time, memory and processes.

With bubblewrap (`apt-get install bubblewrap`) a worker is a sandbox that sees an empty
root holding only the system (/usr), Python, the virtual environment and the trapped copy
of `dl4nlp`, all read-only, and a private, size-limited /tmp: no course folder, no CSV, no
other submission, no network, a PID namespace of its own (everything in it dies with it).
In it a zygote (`dl4nlp.instructor.autograde.harness`) has torch imported and forks one child per
submission. Graded as root, each child drops to a user id of its own before any student
code, so the process limit (fork bombs) and file permissions hold: a child can write only
to its own folder and cannot see or signal its siblings, and one worker serves all jobs.
Otherwise each job gets a worker (a sandbox) of its own.

Without bubblewrap, or when it cannot start, the zygote runs as a plain subprocess with
the same time and memory limits, and the grader warns once: a submission can then read
what the grading user can read, and, graded as root, fork without limit. Processes it leaves
behind are still killed after it, detached ones included (the zygote is their subreaper).

The memory limit bounds each process's address space (RLIMIT_AS), not a submission: one
that starts processes can use up to `processes` times as much (`memory_note` says so in
every run). Submissions graded at the same time in one bubblewrap sandbox (as root) each
get a network namespace of their own, so they share no loopback (where the kernel allows
unprivileged user namespaces; otherwise they share the sandbox's empty one), but they see
each other's processes in /proc, though they can neither signal nor read them (other user
ids): grade with --jobs 1 where even that matters.

The parent enforces the wall-clock limits: when a cell (or a graded function) runs past its
limit, or a notebook past its own, the zygote kills that child and everything it started.
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from dl4nlp.runtime import OFFLINE_ENVIRONMENT, SMOKE_VARIABLE

UID_BASE = 1_900_000_000  # unprivileged users for submissions: one per submission, never a real account
ENVIRONMENT = {
    **OFFLINE_ENVIRONMENT, SMOKE_VARIABLE: "1",
    "LANG": "C.UTF-8", "USER": "student", "LOGNAME": "student", "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1", "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1", "DL4NLP_GRADING": "1", "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false",
}
NO_SANDBOX = ("After each submission every process it started is killed, detached ones too (the worker adopts "
              "them), but while it runs it shares your network, your processes and your files.")
ZYGOTE_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL")


@dataclass(frozen=True)
class Limits:
    """Per-submission limits. Times in seconds, sizes in MiB."""

    cell_timeout: float = 120.0  # one notebook cell, or one graded function on all its cases
    notebook_timeout: float = 600.0  # the whole submission
    memory_mb: int = 4096  # address space of each process (RLIMIT_AS), not of the submission: see `memory_note`
    processes: int = 64  # tasks of the submission's user (RLIMIT_NPROC), threads included
    tmp_mb: int = 512  # the private /tmp of a worker (bubblewrap only)
    file_mb: int = 256  # largest file a submission may write (RLIMIT_FSIZE)
    output_mb: int = 64  # most a submission may send back


def memory_note(limits: Limits) -> str:
    """What --memory-mb means, said plainly: it bounds each process, and a submission may start several."""
    return (f"--memory-mb {limits.memory_mb} bounds the address space of each process of a submission "
            f"(RLIMIT_AS), not the submission as a whole: one that starts processes (up to {limits.processes}, "
            "threads included) can use more in all. Grade with fewer --jobs on a machine with little memory.")


@dataclass
class Run:
    """What came back from one submission."""

    events: list[dict] = field(default_factory=list)
    returncode: int | None = None
    killed: str | None = None  # why it was stopped: "cell", "part", "notebook", or "worker" (the zygote died)
    running: dict | None = None  # what was running at the end: {"cell": 3} or {"part": "lstm_cell"}
    stderr: str = ""
    seconds: float = 0.0


class Sandbox:
    """How workers start for one grading run; `mode` is "bubblewrap" or "subprocess"."""

    def __init__(self, package: Path, scratch: Path, private: list[Path], limits: Limits,
                 preload: list[str], requested: str | None = None) -> None:
        """package: the trapped copy of dl4nlp; scratch: the run's own folder; private: folders no
        submission may see (the course, the submissions, the CSV); preload: modules the zygote imports."""
        self.package, self.scratch, self.private = package, scratch, [p.resolve() for p in private]
        self.limits, self.preload = limits, preload
        self.as_root = os.geteuid() == 0
        self.warning: str | None = None
        self.mode = "subprocess"
        requested = requested or os.environ.get("DL4NLP_SANDBOX", "auto")
        if requested not in ("auto", "bubblewrap", "none"):
            raise ValueError(f"DL4NLP_SANDBOX must be auto, bubblewrap or none, not {requested!r}")
        if requested == "none":
            self.warning = ("DL4NLP_SANDBOX=none: submissions run as plain subprocesses, not contained. "
                            + NO_SANDBOX)
            return
        problem = self._probe()
        if problem is None:
            self.mode = "bubblewrap"
        elif requested == "bubblewrap":
            raise RuntimeError(f"bubblewrap was requested but does not work here: {problem}")
        else:
            self.warning = (f"{problem}. Submissions run as plain subprocesses with time and memory limits only: "
                            "they can read what you can read and, run as root, fork without limit. " + NO_SANDBOX
                            + " Install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) to contain them.")

    @property
    def drops_user(self) -> bool:
        """True when each submission runs as a user id of its own."""
        return self.mode == "bubblewrap" and self.as_root

    @property
    def limits_processes(self) -> bool:
        """True when the process limit holds (it never does for root): fork bombs stay bounded."""
        return self.drops_user or not self.as_root

    # --- bubblewrap ---------------------------------------------------------------------------

    def _probe(self) -> str | None:
        if sys.platform != "linux":
            return "bubblewrap needs Linux"
        if shutil.which("bwrap") is None:
            return "bubblewrap (bwrap) is not installed"
        drop = (f"import os; os.setgroups([]); os.setgid({UID_BASE}); os.setuid({UID_BASE}); "
                if self.as_root else "")
        command = self._bwrap() + [sys.executable, "-c", drop + "import dl4nlp.instructor.autograde.trap"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"bubblewrap could not start ({error})"
        if result.returncode != 0:
            last = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
            return f"bubblewrap could not start ({last[0]})"
        return None

    def _python_paths(self) -> list[Path]:
        """Folders Python needs: its installation, the environment, and sys.path entries outside private folders."""
        candidates = [Path(sys.base_prefix), Path(sys.prefix), Path(sysconfig.get_paths()["stdlib"])]
        candidates += [Path(entry) for entry in sys.path if entry and Path(entry).is_absolute()]
        package, prefix = _installed_package(), Path(sys.prefix).resolve()
        paths: list[Path] = []
        for path in (candidate.resolve() for candidate in candidates):
            if not path.exists() or path.is_relative_to(package):
                continue
            if not path.is_relative_to(prefix) and (
                    package.is_relative_to(path)  # an editable install's src/: the real dl4nlp stays out
                    or (path / "dl4nlp").exists()  # another checkout's (the venv's editable install, say)
                    or any(path.is_relative_to(h) or h.is_relative_to(path) for h in self.private)):
                continue
            paths.append(path)
        return paths

    def _bwrap(self) -> list[str]:
        """bubblewrap with an empty root: the system, Python and the trapped dl4nlp read-only, a private /tmp."""
        package = _installed_package()  # where `import dl4nlp` finds the package
        command = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                   "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if self.as_root:  # what the zygote needs to set up and clean up children; the children drop it all
            command += ["--cap-drop", "ALL"] + [arg for cap in ZYGOTE_CAPABILITIES for arg in ("--cap-add", cap)]
        mounts: list[tuple[Path, Path]] = []
        for top in ("usr", "bin", "lib", "lib32", "lib64", "libx32", "sbin"):
            path = Path("/") / top
            if path.is_symlink():
                command += ["--symlink", os.readlink(path), str(path)]
            elif path.is_dir():
                mounts.append((path, path))
        for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "nsswitch.conf"):
            if (Path("/etc") / name).exists():
                mounts.append((Path("/etc") / name, Path("/etc") / name))
        for path in self._python_paths():
            if not any(path.is_relative_to(source) for source, _ in mounts):
                mounts.append((path, path))
        mounts.append((self.package, package))
        accounts = self.scratch / "etc"
        accounts.mkdir(exist_ok=True)
        (accounts / "passwd").write_text("root:x:0:0::/tmp:/bin/false\nstudent:x:1000:1000::/tmp:/bin/false\n")
        (accounts / "group").write_text("root:x:0:\nstudent:x:1000:\n")
        mounts += [(accounts / "passwd", Path("/etc/passwd")), (accounts / "group", Path("/etc/group"))]
        # The private /tmp first, the read-only mounts after it: an environment that lives under /tmp
        # (a clone in /tmp, say) stays visible instead of being covered by the tmpfs.
        command += ["--proc", "/proc", "--dev", "/dev", "--perms", "0755", "--size", str(self.limits.tmp_mb * 2**20),
                    "--tmpfs", "/tmp"]
        made: set[Path] = {Path("/"), Path("/tmp")}
        for source, target in sorted(mounts, key=lambda mount: len(mount[1].parts)):
            inside_another = any(target.is_relative_to(t) and t != target for _, t in mounts)
            for parent in reversed(target.parents):
                if parent not in made and not inside_another:
                    command += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            command += ["--ro-bind", str(source), str(target)]
            made.add(target)
        command += ["--chdir", "/tmp", "--clearenv"]
        # The trapped copy first on the path, whatever else the environment's .pth files add.
        for key, value in {**self._environment(Path("/tmp")), "PYTHONPATH": str(package.parent)}.items():
            command += ["--setenv", key, value]
        return command

    def _environment(self, home: Path) -> dict[str, str]:
        environment = {**ENVIRONMENT, "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
                       "HOME": str(home)}
        for key in ("MPLCONFIGDIR", "HF_HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR"):
            environment[key] = str(home / f".{key.lower()}")
        return environment

    def zygote(self, control_fd: int) -> tuple[list[str], dict[str, str] | None, Path]:
        """(command, environment or None to keep bubblewrap's, working folder) of a worker's zygote."""
        if self.mode == "bubblewrap":
            jobs = Path("/tmp")
            command, environment, cwd = self._bwrap() + [sys.executable], None, self.scratch
        else:
            jobs = self.scratch / "jobs"
            jobs.mkdir(exist_ok=True)
            environment = {**self._environment(jobs), "PYTHONPATH": str(self.package.parent)}
            command, cwd = [sys.executable], jobs
        return command + ["-m", "dl4nlp.instructor.autograde.harness", str(control_fd), str(jobs),
                          *self.preload], environment, cwd


class Worker:
    """One zygote: started on first use, and again if it died. Safe to share between threads.

    Submissions sent from several threads run at the same time, as sibling children of the
    zygote: do that only where each child has a user id of its own (`Sandbox.drops_user`).
    """

    _jobs = itertools.count(1)

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.process: subprocess.Popen | None = None
        self.socket: socket.socket | None = None
        self.stderr: _Tail | None = None
        self._lock = threading.RLock()
        self._inboxes: dict[int, queue.Queue] = {}
        self._stopped = False  # the zygote closed its socket: it is gone, or going, even if bubblewrap still runs

    def start(self) -> None:
        """Start the zygote, unless it runs already; RuntimeError if it cannot.

        A zygote that stopped is never reused, even while bubblewrap is still exiting: it is
        waited for, and a new one starts.
        """
        with self._lock:
            if self.process is not None and self.process.poll() is None and not self._stopped:
                return
            self.close()
            self._stopped = False
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            command, environment, cwd = self.sandbox.zygote(theirs.fileno())
            try:
                self.process = _start_kept(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE, pass_fds=(theirs.fileno(),), cwd=cwd,
                                           env=environment, start_new_session=True)
            finally:
                theirs.close()
            self.socket, self.stderr = ours, _Tail(self.process.stderr)
            ready, _, _ = select.select([ours], [], [], 600)
            message = ours.recv(4096) if ready else b""
            if b'"ready"' not in message:
                stderr = self.stderr.text()[-500:]
                self.close()
                raise RuntimeError(f"the grading worker did not start: {stderr}")
            threading.Thread(target=self._dispatch, args=(ours,), daemon=True).start()

    def _dispatch(self, sock: socket.socket) -> None:
        """Route the zygote's messages to the job they are about; tell every job if the zygote dies."""
        while True:
            try:
                data = sock.recv(4096)
            except OSError:
                data = b""
            if not data:
                with self._lock:
                    if self.socket is sock:
                        self._stopped = True
                    for inbox in self._inboxes.values():
                        inbox.put({"event": "gone"})
                return
            try:
                message = json.loads(data)
            except ValueError:
                continue
            with self._lock:
                inbox = self._inboxes.get(message.get("job"))
            if inbox is not None:
                inbox.put(message)

    def _send(self, message: dict, fds: list[int] = ()) -> None:
        with self._lock:
            if self.socket is not None:
                socket.send_fds(self.socket, [json.dumps(message).encode()], list(fds))

    def close(self) -> None:
        """Stop the zygote and wait until bubblewrap (and so everything in its sandbox) has exited."""
        with self._lock:
            if self.process is not None:
                if self.process.poll() is None:
                    _kill_group(self.process.pid)
                self.process.wait()
            if self.socket is not None:
                self.socket.close()
            if self.stderr is not None:
                self.stderr.join(2)
            self.process = self.socket = self.stderr = None

    def run(self, header: dict, cases: bytes, uid: int | None) -> Run:
        """Run one submission: `header` (cells, parts: {function: module}) and the grader's pickled cases."""
        limits = self.sandbox.limits
        self.start()
        processes = limits.processes if uid is not None else _tasks_of(os.getuid()) + limits.processes
        header = {**header, "cell_timeout": limits.cell_timeout, "memory_mb": limits.memory_mb,
                  "processes": processes, "file_mb": limits.file_mb, "cases_bytes": len(cases)}
        job, inbox = next(self._jobs), queue.Queue()
        job_in, job_out = os.pipe()
        report_in, report_out = os.pipe()
        error_in, error_out = os.pipe()
        with self._lock:
            self._inboxes[job] = inbox
        try:
            self._send({"job": job, "uid": uid}, [job_in, report_out, error_out])
        except OSError:
            inbox.put({"event": "gone"})
        finally:
            for fd in (job_in, report_out, error_out):
                os.close(fd)
        feeder = _Feeder(job_out, json.dumps(header).encode() + b"\n", cases)
        reader = _EventReader(report_in, limits.output_mb * 2**20, on_cases=feeder.release)
        stderr = _Tail(os.fdopen(error_in, "rb"))
        run, start, child, deadline = Run(), time.monotonic(), None, None
        while True:
            try:
                message = inbox.get(timeout=0.2)
            except queue.Empty:
                message = {}
            if message.get("event") == "started":
                child = message.get("pid")
            elif message.get("event") == "ended":
                run.returncode = message.get("returncode")
                break
            elif message.get("event") == "gone":
                run.killed = run.killed or "worker"
                break
            now = time.monotonic()
            if run.killed is None:
                if now - start > limits.notebook_timeout:
                    run.killed = "notebook"
                elif reader.running is not None and now - reader.running_since > limits.cell_timeout + 5:
                    run.killed = "cell" if "cell" in reader.running else "part"
                if run.killed:
                    deadline = now + 15
                    self._send({"kill": job})  # the zygote kills the child and all it started
                    if self.sandbox.mode != "bubblewrap" and isinstance(child, int):
                        _kill_group(child)  # without a PID namespace, its session too
            elif now > deadline:
                self.close()  # the zygote did not manage: the whole sandbox goes
                break
        with self._lock:
            self._inboxes.pop(job, None)
        feeder.finish()
        reader.join(10)
        stderr.join(5)
        run.events, run.running, run.stderr = reader.events, reader.running, stderr.text()
        run.seconds = time.monotonic() - start
        return run


def _start_kept(command: list[str], **options: object) -> subprocess.Popen:
    """Popen from a thread that lives as long as the process.

    bubblewrap's --die-with-parent fires when the *thread* that started it ends, so a
    worker started from a short-lived thread would die at once.
    """
    started: dict[str, object] = {}
    ready = threading.Event()

    def keep() -> None:
        try:
            started["process"] = subprocess.Popen(command, **options)
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller
            started["error"] = error
            ready.set()
            return
        ready.set()
        started["process"].wait()

    threading.Thread(target=keep, daemon=True).start()
    ready.wait()
    if "error" in started:
        raise started["error"]
    return started["process"]


class _Feeder(threading.Thread):
    """Writes a job to its child: the header at once, the cases only when the harness asks for them.

    The harness asks once every cell has run, so no cell can read the cases (from the harness's
    memory, say) and make them part of its output: feedback shows cell errors, and cases must
    stay hidden. Anything the submission sends after the release is treated as case-dependent.
    """

    def __init__(self, fd: int, header: bytes, cases: bytes) -> None:
        super().__init__(daemon=True)
        self.fd, self.header, self.cases = fd, header, cases
        self._released, self._finished = threading.Event(), threading.Event()
        self.start()

    def release(self) -> None:
        self._released.set()

    def finish(self) -> None:
        self._finished.set()

    def run(self) -> None:
        try:
            with os.fdopen(self.fd, "wb") as stream:
                stream.write(self.header)
                stream.flush()
                while not self._released.wait(0.2):
                    if self._finished.is_set():
                        return
                stream.write(self.cases)
        except OSError:
            pass  # the child died before reading its job: the run reports it


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _tasks_of(uid: int) -> int:
    """How many tasks (threads included) `uid` runs now: what RLIMIT_NPROC counts."""
    count = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("Uid", "").split()[:1] == [str(uid)]:
            count += int(fields.get("Threads", "1").strip() or 1)
    return count


MAX_EVENT_BYTES = 24 * 2**20  # one line of the report: a part's outputs (16 MiB) in base64, with room
MAX_EVENTS = 20_000  # two per cell and part, and a few more
KINDS = {"ready", "cell", "part", "cases", "done", "setup-failed", "harness-failed"}


class _EventReader(threading.Thread):
    """Reads a child's JSON lines; remembers which cell or part is running and since when.

    Everything on this channel may be forged by the submission, so what is kept is bounded:
    at most `limit` bytes are read (then the channel is closed and an "overflow" event added),
    lines longer than MAX_EVENT_BYTES are skipped unparsed, only known kinds of event are kept,
    at most MAX_EVENTS of them, and only the first end of each cell and each part counts.
    Cell events sent after the cases were released are dropped (the harness runs no cell then),
    and so are part events sent before (it runs no graded function then).
    """

    def __init__(self, fd: int, limit: int, on_cases: Callable[[], None] = lambda: None) -> None:
        super().__init__(daemon=True)
        self.fd, self.limit, self.on_cases = fd, limit, on_cases
        self.events: list[dict] = []
        self.running: dict | None = None
        self.running_since = 0.0
        self.released = False  # the cases were sent
        self._ended: set[tuple[str, object]] = set()
        self.start()

    def run(self) -> None:
        received, pending, skipping = 0, bytearray(), False
        with os.fdopen(self.fd, "rb", buffering=0) as stream:
            while chunk := stream.read(1 << 16):
                received += len(chunk)
                if received > self.limit or len(self.events) >= MAX_EVENTS:
                    self.events.append({"event": "overflow"})
                    return  # closing the channel: the child's next report fails and it ends
                start = 0
                while (newline := chunk.find(b"\n", start)) >= 0:
                    if not skipping and len(pending) + newline - start <= MAX_EVENT_BYTES:
                        pending += chunk[start:newline]
                        self._handle(bytes(pending))
                    pending.clear()
                    skipping, start = False, newline + 1
                if not skipping:
                    pending += chunk[start:]
                    if len(pending) > MAX_EVENT_BYTES:
                        pending.clear()
                        skipping = True  # the rest of this line is not kept

    def _handle(self, line: bytes) -> None:
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict) or event.get("event") not in KINDS:
            return
        kind, phase = event.get("event"), event.get("phase")
        if kind == "cases":
            if not self.released:
                self.released = True
                self.on_cases()
            return
        if (kind == "cell" and self.released) or (kind == "part" and not self.released):
            return  # the harness runs cells before it asks for the cases, and graded functions after
        if kind in ("cell", "part") and phase == "end":
            key = (kind, repr(event.get("index", event.get("name"))))
            if key in self._ended:
                return  # only the first result counts
            self._ended.add(key)
        self.events.append(event)
        if kind in ("cell", "part") and phase == "start":
            self.running = {kind: event.get("index", event.get("name"))}
            self.running_since = time.monotonic()
        elif kind in ("cell", "part"):
            self.running = None


class _Tail(threading.Thread):
    """Keeps the last bytes of a stream (stderr: where crashes are described)."""

    def __init__(self, stream, keep: int = 8192) -> None:
        super().__init__(daemon=True)
        self.stream, self.keep, self.data = stream, keep, b""
        self.start()

    def run(self) -> None:
        with self.stream:
            while chunk := self.stream.read1(1 << 16):
                self.data = (self.data + chunk)[-self.keep:]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


def _installed_package() -> Path:
    """The folder of the `dl4nlp` package this grader runs from (where `import dl4nlp` finds it)."""
    import dl4nlp

    return Path(dl4nlp.__file__).resolve().parent
