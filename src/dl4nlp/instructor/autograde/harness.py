"""Inside the sandbox: a zygote that imports torch once, and one forked child per submission.

    python -m dl4nlp.instructor.autograde.harness CONTROL_FD JOBS_ROOT [PRELOAD ...]

The zygote imports torch, the (trapped) chapter modules, the exercises and the
modules the released notebook imports, then waits on the control socket. For each
submission the grader sends three file descriptors (job data in, report out, stderr out)
and the submission's user id; the zygote forks a child, and reaps it when it ends (or kills
it when the grader says its time is up). It never reads job data or reports itself, so no
submission's code or output ever sits in its memory, where a later child could find it.

The child, before any student code: starts its own session, keeps only its three
descriptors, reads the job's cells, sets its limits (address space, processes, file size),
makes its own working folder, and drops to its unprivileged user (when the zygote runs as
root). Then it runs the code cells in order like "Run all" with errors allowed (an exception
is recorded and the next cell runs; out of memory or out of processes ends the run; a cell
past its time limit ends the cells, and the functions defined before it are still graded),
each cell's source registered in `linecache` as IPython does. Only then does it ask for the
grader's cases, call each graded function on them with a watch on
(`dl4nlp.exercises.calls.Watch`: the part's forbidden library calls and calls of the trapped
references are recorded), and report, one JSON object per line.

After a child ends the zygote kills whatever it left running (everything of its user id; or,
without one, every descendant of the zygote: as the subreaper it adopts detached processes)
and deletes its folder, whatever that holds (`remove_tree`). The zygote survives anything a
submission does, and is never reused by the grader once it has stopped.

Nothing here grades: student code shares the child's process and could change anything in
it, so the grader trusts only the outputs, loaded with ``torch.load(weights_only=True)`` and
compared with the reference in its own process.
"""

from __future__ import annotations

import base64
import builtins
import errno
import inspect
import io
import json
import linecache
import os
import resource
import signal
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

MAX_OUTPUT_BYTES = 16 * 2**20  # per part
FATAL = ("timeout", "memory", "processes")

_write, _getpid, _exit, _dumps = os.write, os.getpid, os._exit, json.dumps  # before any student code
_setitimer, _signal = signal.setitimer, signal.signal


class CellTimeout(BaseException):
    """Raised by the alarm; a BaseException, so that `except Exception` in student code does not swallow it."""


class Channel:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, **event: object) -> None:
        data = (_dumps(event) + "\n").encode()
        try:
            while data:
                data = data[_write(self.fd, data):]
        except OSError:
            _exit(3)  # the grader is gone, or the submission closed the channel


def _on_alarm(signum: int, frame: object) -> None:
    raise CellTimeout()


@contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    _signal(signal.SIGALRM, _on_alarm)
    _setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _setitimer(signal.ITIMER_REAL, 0)


def _remember_source(filename: str, source: str) -> None:
    """Register a cell's source under its file name, as IPython does: `inspect.getsource` (and so
    `torch.jit.script`, tracebacks and `dataclasses`) find the code of functions defined in cells."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)


def describe(error: BaseException, filename: str) -> str:
    """'NameError: name 'x' is not defined (line 3)', the line counted in the cell."""
    line = None
    trace: TracebackType | None = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename == filename:
            line = trace.tb_lineno
        trace = trace.tb_next
    try:
        text = f"{type(error).__name__}: {error}".strip().rstrip(":")
    except Exception:  # noqa: BLE001 - a student's exception whose str() fails
        text = type(error).__name__
    if isinstance(error, SyntaxError):
        text, line = f"SyntaxError: {error.msg}", error.lineno
    text = text if len(text) <= 300 else text[:297] + "..."
    return text + (f" (line {line})" if line else "")


def outcome_kind(error: BaseException) -> str:
    """"timeout", "memory", "processes" (the run ends) or "error" (the next cell runs)."""
    if isinstance(error, CellTimeout):
        return "timeout"
    if isinstance(error, MemoryError):
        return "memory"
    message = str(error) if isinstance(error, (RuntimeError, OSError)) else ""
    if isinstance(error, RuntimeError) and ("can't allocate memory" in message or "not enough memory" in message):
        return "memory"
    if (isinstance(error, OSError) and error.errno == errno.EAGAIN) or "can't start new thread" in message:
        return "processes"
    return "error"


# --- the child: one submission -------------------------------------------------------------------


class Harness:
    """Runs one submission's cells and graded functions; reports on `channel`."""

    def __init__(self, job: dict, job_stream: io.BufferedReader, channel: Channel) -> None:
        import importlib

        import torch

        from dl4nlp import exercises
        from dl4nlp.exercises import calls
        from dl4nlp.instructor.autograde import trap

        self.job, self.job_stream, self.channel = job, job_stream, channel
        self.cases: dict = {}  # the grader's cases, received once every cell has run
        self.main_pid = _getpid()
        self.torch, self.exercises, self.calls, self.trap = torch, exercises, calls, trap
        self.references = {name: getattr(importlib.import_module(module), name, None)
                           for name, module in job["parts"].items()}
        # {part: {name: the grader's own function}}: bound in the namespace while the part runs (Part.given)
        self.given = {part: {name: _resolve(where) for name, where in functions.items()}
                      for part, functions in job.get("given", {}).items()}
        # {part: the grader's function that reads what a call left in its arguments} (Part.effects)
        self.effects = {part: _resolve(where) for part, where in job.get("effects", {}).items()}
        self.namespace = {"__name__": "__main__", "__builtins__": builtins,
                          "display": lambda *objects, **options: None, "get_ipython": lambda: None}
        self.builtins = dict(vars(builtins))  # pristine: no student code has run yet

    def restore_builtins(self) -> None:
        """Undo changes to the builtins module (`builtins.abs = ...`): they would only break the harness."""
        current = vars(builtins)
        if current != self.builtins:
            current.clear()
            current.update(self.builtins)

    def guard(self) -> None:
        """A process forked by student code never reports: it ends here. Zombies are collected."""
        if _getpid() != self.main_pid:
            _exit(0)
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            pass

    def run_cell(self, index: int, source: str) -> tuple[str, str | None]:
        filename = f"<cell {index}>"
        _remember_source(filename, source)
        try:
            code = compile(source, filename, "exec")
        except (SyntaxError, ValueError) as error:
            return "error", describe(error, filename)
        try:
            with _alarm(self.job["cell_timeout"]):
                exec(code, self.namespace)  # noqa: S102 - running the submission is the point
        except BaseException as error:  # noqa: BLE001 - everything a cell raises is recorded
            return outcome_kind(error), describe(error, filename)
        return "ok", None

    def is_reference(self, function: object, reference: object) -> bool:
        # The reference's own code, under decorators such as @shapes: a decorator's wrapper code is
        # shared by every function it decorates, the student's included.
        code = getattr(inspect.unwrap(reference) if callable(reference) else reference, "__code__", None)
        for _ in range(8):  # through functools.wraps and partial layers
            seen = getattr(function, "__code__", None)
            if function is reference or (code is not None and seen is not None and (
                    seen is code or (seen.co_filename, seen.co_name) == (code.co_filename, code.co_name))):
                return True
            function = getattr(function, "__wrapped__", None) or getattr(function, "func", None)
            if function is None:
                return False
        return False

    def watch(self, name: str) -> dl4nlp.exercises.calls.Watch:  # noqa: F821 - imported in __init__
        """A watch that records the part's forbidden calls (and calls of the trapped references) while it runs."""
        references = {f"{module}.{part}": self.references[part] for part, module in self.job["parts"].items()
                      if callable(self.references.get(part))}
        targets = self.calls.Targets(self.job.get("forbidden", {}).get(name, ()), references)
        return self.calls.Watch(name, targets)

    def evaluate(self, name: str) -> dict:
        function = self.namespace.get(name)
        if function is None:
            return {"problem": f"{name} is not defined"}
        if not callable(function):
            return {"problem": f"{name} is a {type(function).__name__}, not a function"}
        code = getattr(function, "__code__", None)
        result: dict = {"defined_in": str(getattr(code, "co_filename", "")),
                        "is_reference": self.is_reference(function, self.references.get(name))}
        self.trap.CALLS.clear()
        watch = self.watch(name)
        watched = watch.wrap(function)
        outcomes: list[tuple[object, str | None]] = []
        try:
            with _alarm(self.job["cell_timeout"]), self.exercises.binding(self.given.get(name, {}), self.namespace):
                for args in self.cases[name]:
                    outcome = self.exercises.call(watched, self.exercises.Case(tuple(args), ""), self.effects.get(name))
                    self.guard()
                    outcomes.append((outcome.output, outcome.gradients, outcome.error))
                    if outcome.error and outcome.error.startswith("MemoryError"):
                        result["status"] = "memory"
        except BaseException as error:  # noqa: BLE001 - a timeout, or an exception escaping `call`
            result["status"] = outcome_kind(error)
            result["problem"] = describe(error, "")
        result["calls"] = sorted(set(self.trap.CALLS))
        result["forbidden"] = [str(use) for use in watch.found(self.calls.FORBIDDEN)]
        if "problem" not in result:
            buffer = io.BytesIO()
            try:
                self.torch.save(outcomes, buffer)
            except Exception as error:  # noqa: BLE001 - outputs the grader cannot store
                result["problem"] = f"its outputs could not be stored ({describe(error, '')})"
            else:
                if buffer.tell() > MAX_OUTPUT_BYTES:
                    result["problem"] = "its outputs are too large"
                else:
                    result["outputs"] = base64.b64encode(buffer.getvalue()).decode()
        return result

    def run(self) -> None:
        self.channel.send(event="ready", uid=os.getuid(), package=str(Path(self.exercises.__file__).parents[1]))
        stopped = None
        for index, source in self.job["cells"]:
            self.channel.send(event="cell", phase="start", index=index)
            status, error = self.run_cell(index, source)
            self.guard()
            self.restore_builtins()
            self.channel.send(event="cell", phase="end", index=index, status=status, error=error)
            if status == "timeout":  # the cells after it do not run; what was defined before it is graded
                stopped = index
                break
            if status in FATAL:
                self.channel.send(event="done", fatal=status)
                return
        self.cases = self.receive_cases()
        for name in self.job["parts"]:
            self.channel.send(event="part", phase="start", name=name)
            result = self.evaluate(name)
            self.guard()
            self.restore_builtins()
            self.channel.send(event="part", phase="end", name=name, **result)
        self.channel.send(event="done", stopped=stopped)

    def receive_cases(self) -> dict:
        """Ask the grader for its cases, which it sends only now: no cell ever ran with them in memory."""
        self.channel.send(event="cases")
        return self.torch.load(io.BytesIO(self.job_stream.read(self.job["cases_bytes"])), weights_only=False)


def _own_network() -> bool:
    """Give this submission a network namespace of its own (no interface up, not even loopback).

    Submissions graded at the same time share the sandbox's namespace and so its loopback: a
    channel between them. The namespace comes with a user namespace that maps only the
    submission's own ids, which an unprivileged process may create anyway; limits and file
    permissions still count against its real user id. False where the kernel refuses.
    """
    import ctypes

    uid, gid = os.getuid(), os.getgid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: setuid() cleared it, and with it the right to write our id maps
    if libc.unshare(0x10000000 | 0x40000000) != 0:  # CLONE_NEWUSER | CLONE_NEWNET
        return False
    for name, text in (("uid_map", f"{uid} {uid} 1"), ("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as handle:
            handle.write(text)
    return True


def _read_header(fd: int) -> tuple[dict, io.BufferedReader]:
    """The job's JSON header line, and the stream on which the cases (header["cases_bytes"] bytes
    of torch.save'd data) arrive later, when the harness asks for them."""
    stream = os.fdopen(fd, "rb")
    return json.loads(stream.readline()), stream


def _resolve(where: str) -> object:
    """The object named "module:qualified.name"."""
    import importlib

    module, _, name = where.partition(":")
    value: object = importlib.import_module(module)
    for attribute in name.split("."):
        value = getattr(value, attribute)
    return value


def _set_limits(job: dict) -> None:
    mib = 2**20
    limits = ((resource.RLIMIT_AS, job["memory_mb"] * mib), (resource.RLIMIT_FSIZE, job["file_mb"] * mib),
              (resource.RLIMIT_NPROC, job["processes"]), (resource.RLIMIT_CORE, 0))
    for kind, value in limits:
        try:
            resource.setrlimit(kind, (value, value))
        except (ValueError, OSError):
            pass  # an existing hard limit is lower: that one holds


def _child(control: dict, fds: list[int], jobs_root: Path) -> None:
    """Everything up to the first student cell, then the harness. Never returns."""
    job_in, report, stderr = fds
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.dup2(stderr, 2)
    low = 3
    for kept in sorted({job_in, report}):  # close everything else: the control socket, the zygote's pipes
        os.closerange(low, kept)
        low = kept + 1
    os.closerange(low, 1 << 16)
    import faulthandler

    faulthandler.enable()  # a crash prints where it happened, into this job's stderr
    job, job_stream = _read_header(job_in)
    channel = Channel(report)
    try:
        _set_limits(job)
        folder = jobs_root / f"job-{control['job']}"
        folder.mkdir(mode=0o700)
        uid = control.get("uid")
        if uid is not None:
            os.chown(folder, uid, uid)
        os.chdir(folder)
        sys.path.insert(0, str(folder))  # as in Jupyter: modules the notebook writes (%%writefile) import
        for key in ("HOME", "TMPDIR"):
            os.environ[key] = str(folder)
        for key in ("MPLCONFIGDIR", "HF_HOME", "XDG_CACHE_HOME", "TORCHINDUCTOR_CACHE_DIR"):
            os.environ[key] = str(folder / f".{key.lower()}")
        import tempfile

        tempfile.tempdir = None
        harness = Harness(job, job_stream, channel)
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)  # as root this changes real, effective and saved ids, and clears all capabilities
            if os.getuid() != uid or os.geteuid() != uid:
                raise PermissionError("could not switch to the submission's user")
            _own_network()
    except BaseException as error:  # noqa: BLE001 - reported as the grader's own failure
        channel.send(event="setup-failed", error=f"{type(error).__name__}: {error}")
        _exit(2)
    try:
        harness.run()
    except BaseException as error:  # noqa: BLE001 - student code broke the harness itself
        channel.send(event="harness-failed", error=describe(error, ""))
        _exit(71)
    _exit(0)  # no atexit handlers, no waiting for threads the submission started


# --- the zygote ------------------------------------------------------------------------------------


def remove_tree(path: Path) -> None:
    """Delete a job folder whatever it holds, never raising: any depth, any permissions, no recursion.

    `shutil.rmtree` recurses (a 1,500-deep tree raises RecursionError, which ignore_errors does
    not cover) and builds paths longer than PATH_MAX. Here every subdirectory is first moved up
    into the top folder (by descriptor, so path length never matters), then emptied and removed.
    """
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        os.chmod(path, 0o700)
        top = os.open(path, flags)
    except OSError:
        return
    try:
        pending: list[str | None] = [None]  # None: the top folder; names: folders moved into it
        scheduled: set[str] = set()
        moved = 0
        while pending:
            name = pending[-1]
            try:
                if name is not None:
                    os.chmod(name, 0o700, dir_fd=top)
                folder = top if name is None else os.open(name, flags, dir_fd=top)
            except OSError:
                pending.pop()
                continue
            found_folder = False
            try:
                with os.scandir(folder) as entries:
                    for entry in entries:
                        try:
                            if not entry.is_dir(follow_symlinks=False):
                                os.unlink(entry.name, dir_fd=folder)
                            elif name is None:
                                if entry.name not in scheduled:
                                    scheduled.add(entry.name)
                                    pending.append(entry.name)
                                    found_folder = True
                            else:
                                moved += 1
                                target = f".removing-{moved}"
                                os.rename(entry.name, target, src_dir_fd=folder, dst_dir_fd=top)
                                scheduled.add(target)
                                pending.append(target)
                                found_folder = True
                        except OSError:
                            continue
            except OSError:
                pass
            finally:
                if folder != top:
                    os.close(folder)
            if not found_folder:
                pending.pop()
                try:
                    if name is None:
                        os.rmdir(path)
                    else:
                        os.rmdir(name, dir_fd=top)
                except OSError:
                    pass
    finally:
        os.close(top)


def _become_subreaper() -> bool:
    """Make the zygote the parent of every orphan its children leave (prctl PR_SET_CHILD_SUBREAPER).

    A double fork with setsid() leaves both the child's process group and session; as the
    subreaper the zygote still finds such a process among its descendants and kills it.
    """
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # 36: PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _descendants(root: int) -> list[int]:
    """Live (not zombie) processes below `root`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        state, parent = stat[stat.rfind(b")") + 2:].split()[:2]
        if state != b"Z":
            children.setdefault(int(parent), []).append(int(entry))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_descendants() -> bool:
    """SIGKILL every descendant of this process until none is left; True when none was left.

    Repeated, because a process may fork while it is being killed. Only for a zygote whose
    one job has ended: a running job's child is a descendant too.
    """
    for _ in range(200):
        found = _descendants(os.getpid())
        if not found:
            _reap()
            return True
        for pid in found:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
    return False


def _reap() -> dict[int, int]:
    """Collect every ended child of this process: {pid: wait status}. Adopted orphans are collected too."""
    ended = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        ended[pid] = status


def _clean_up(control: dict, pid: int, jobs_root: Path, alone: bool) -> None:
    """Kill whatever the child left running, then delete its folder. Never raises.

    With a user id of its own, everything of that user dies. Otherwise, when this job ran alone
    in the zygote (one job per zygote there), every descendant of the zygote dies, detached or not.
    """
    try:
        _kill_leftovers(control, pid, alone)
    except Exception:  # noqa: BLE001 - the zygote serves the next submissions whatever happened
        pass
    remove_tree(jobs_root / f"job-{control['job']}")


def _kill_leftovers(control: dict, pid: int, alone: bool) -> None:
    uid = control.get("uid")
    if uid is not None:
        helper = os.fork()
        if helper == 0:  # as the submission's user, kill(-1) reaches exactly its processes
            try:
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(helper, 0)
        return
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if alone:
        kill_descendants()


def serve(control_fd: int, jobs_root: Path, preload: list[str]) -> None:
    """Import once, then fork a child per job; children run at the same time when the grader asks for it.

    Control messages, in: {"job": n, "uid": u} with three descriptors (a new submission), or
    {"kill": n} (stop job n: its time is up). Out: {"event": "started"/"ended", "job": n, ...}.
    """
    import importlib
    import select

    import torch

    torch.set_num_threads(1)
    _become_subreaper()
    for name in ["dl4nlp.exercises", "dl4nlp.instructor.autograde.trap", *preload]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a module the notebook imports but this machine lacks
            pass
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the first optimizer imports torch._dynamo: seconds
    sock = socket.socket(fileno=control_fd)
    sock.sendall(json.dumps({"event": "ready"}).encode())
    running: dict[int, dict] = {}  # pid -> control message
    while True:
        ready, _, _ = select.select([sock], [], [], 0.05 if running else None)
        if ready:
            message, fds, _, _ = socket.recv_fds(sock, 4096, 3)
            if not message:
                for pid, control in running.items():
                    _clean_up(control, pid, jobs_root, alone=len(running) == 1)
                return  # the grader closed the socket: done
            control = json.loads(message)
            if "kill" in control:
                for pid, job in running.items():
                    if job["job"] == control["kill"]:
                        try:
                            os.kill(pid, signal.SIGKILL)
                        except OSError:
                            pass  # it ended meanwhile
                continue
            pid = os.fork()
            if pid == 0:
                try:
                    sock.close()
                    _child(control, fds, jobs_root)
                finally:
                    os._exit(70)
            for fd in fds:
                os.close(fd)
            running[pid] = control
            sock.sendall(json.dumps({"event": "started", "job": control["job"], "pid": pid}).encode())
        for pid, status in _reap().items():  # a job's child, or an orphan the zygote adopted
            control = running.pop(pid, None)
            if control is None:
                continue
            _clean_up(control, pid, jobs_root, alone=not running)
            sock.sendall(json.dumps({"event": "ended", "job": control["job"],
                                     "returncode": os.waitstatus_to_exitcode(status)}).encode())


if __name__ == "__main__":
    serve(int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:])
