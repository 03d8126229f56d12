"""Helpers of the ``--state-dir`` tests: an in-process durable world, ``xapi-sim serve`` as a
child process, and tools to look at (and damage) a state directory."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import XenAPI

from xapi_sim import persist, scenario
from xapi_sim.server import Simulator

HERE = os.path.dirname(os.path.abspath(__file__))


@contextlib.contextmanager
def durable_world(state_dir, ops=None, seed=1):
    """A default world served in-process with its journal in ``state_dir`` (what ``serve
    --state-dir`` sets up). Yields (simulator, journal)."""
    world, journal, _ = persist.open_state(
        str(state_dir), lambda: scenario.build(scenario.default(), seed=seed), ops=ops
    )
    sim = Simulator(world, port=0)
    sim.make_durable(journal)
    sim.start()
    try:
        yield sim, journal
    finally:
        sim.stop()
        journal.close()


def reload(state_dir):
    """The world a restart would find: every write is fsync'd and unbuffered, so the files
    are what a ``kill -9`` at this instant would leave."""
    world, _ = persist.load(str(state_dir))
    return world


def login(url, password="xenroot"):
    s = XenAPI.Session(url)
    s.xenapi.login_with_password("root", password, "2.5", "statedir-test")
    return s


# A Python that has imported the command line (most of a start-up's time) and waits for its
# arguments: then it is ``python -m xapi_sim ARGS`` (see ``Server(warm=True)``). End of input
# without arguments: it exits.
_WARM = (
    "import json, sys\n"
    "from xapi_sim.cli import main\n"
    "line = sys.stdin.readline()\n"
    "sys.exit(main(json.loads(line)) if line else 0)\n"
)


class Server:
    """``xapi-sim serve --state-dir`` in a child process (``launcher``: another script run
    with the same arguments, e.g. the fault launcher).

    ``warm``: for tests that restart the server many times (kill -9 loops): the next
    process is started ahead, imports the command line while the current one serves, and
    is handed its arguments at ``start`` -- a restart then costs loading the state, not
    a Python start-up. Each served process is still a fresh process of its own."""

    def __init__(self, state_dir, workdir, *extra, launcher=None, env=None, warm=False):
        self.state_dir, self.workdir, self.extra = str(state_dir), str(workdir), extra
        self.launcher, self.env = launcher, env
        self.warm = warm and launcher is None
        self.spare = None
        self.proc = None
        self.hosts = {}
        self.out = b""

    def _spawn(self, cmd):
        env = dict(os.environ, **(self.env or {}))
        return subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if self.warm else None,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def _launch(self, args):
        if not self.warm:
            head = [sys.executable, self.launcher or "-m"]
            return self._spawn(head + ([] if self.launcher else ["xapi_sim"]) + args)
        proc, self.spare = self.spare or self._spawn([sys.executable, "-c", _WARM]), None
        proc.stdin.write(json.dumps(args).encode() + b"\n")
        proc.stdin.close()
        return proc

    def close_spare(self):
        if self.spare is not None:
            self.spare.stdin.close()  # it exits without serving
            self.spare.wait(30)
            self.spare.stdout.close()
            self.spare = None

    def start(self, timeout=30):
        ready = os.path.join(self.workdir, f"ready-{os.getpid()}-{id(self)}.json")
        if os.path.exists(ready):
            os.unlink(ready)
        args = [
            "serve",
            "--port",
            "0",
            "--auth-delay",
            "0",
            "--state-dir",
            self.state_dir,
            "--ready-file",
            ready,
            *self.extra,
        ]
        self.proc = self._launch(args)
        deadline = time.monotonic() + timeout
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                out = self.proc.stdout.read().decode(errors="replace")
                raise AssertionError(f"serve did not start: {out}")
            time.sleep(0.01)
        with open(ready) as fh:
            self.hosts = {h["name_label"]: h for h in json.load(fh)["hosts"]}
        os.unlink(ready)
        if self.warm:  # the next one gets ready while this one serves
            self.spare = self._spawn([sys.executable, "-c", _WARM])
        return self

    def url(self, name="xs1"):
        return self.hosts[name]["url"]

    def kill9(self):
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.out += self.proc.stdout.read()

    def stop(self):
        self.close_spare()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
            self.out += self.proc.stdout.read()
            return rc
        return self.proc.returncode if self.proc is not None else None


# A Python that has imported the command line once and forks a child per request: the
# child takes the request's cwd, environment and argv, its stdout/stderr go to the given
# files, and it exits with what ``python -m xapi_sim ARGV`` exits with (``sys.exit(main())``,
# SystemExit and uncaught exceptions as the interpreter treats them). The parent answers
# {"pid"} at the fork and {"rc"} once the child has ended.
_FORKER = r"""
import json, os, sys, traceback
from xapi_sim.cli import main


def child(req):
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    for fd, path in ((0, os.devnull), (1, req["out"]), (2, req["err"])):
        f = os.open(path, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_TRUNC)
        os.dup2(f, fd)
        os.close(f)
    sys.argv = ["xapi-sim", *req["argv"]]
    try:
        code = main(req["argv"])
    except SystemExit as e:
        code = e.code
    except BaseException:
        traceback.print_exc()
        code = 1
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit((code or 0) & 0xFF)


for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            child(req)
        finally:
            os._exit(70)
    print(json.dumps({"pid": pid}), flush=True)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])}), flush=True)
"""
_forker: list = []
_forker_lock = threading.Lock()


def _forked(args, timeout):
    """(exit status, stdout, stderr) of ``xapi-sim ARGS`` run by the forker: a process of
    its own, without a Python start-up (the state-dir tests run the command ~80 times)."""
    with _forker_lock, tempfile.TemporaryDirectory() as tmp:
        if not _forker or _forker[0].poll() is not None:
            _forker[:] = [
                subprocess.Popen(  # unbuffered: select() sees every reply line
                    [sys.executable, "-c", _FORKER],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    bufsize=0,
                )
            ]
        proc = _forker[0]
        out, err = os.path.join(tmp, "out"), os.path.join(tmp, "err")
        for path in (out, err):
            open(path, "wb").close()
        req = {"argv": list(args), "cwd": os.getcwd(), "env": dict(os.environ)}
        proc.stdin.write(json.dumps({**req, "out": out, "err": err}).encode() + b"\n")
        proc.stdin.flush()
        deadline = time.monotonic() + timeout
        pid = None
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
            if not ready:
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["xapi-sim", *args], timeout)
            line = proc.stdout.readline()
            assert line, "the forker of xapi-sim commands died"
            reply = json.loads(line)
            if "pid" in reply:
                pid = reply["pid"]
                continue
            with open(out, encoding="utf-8") as fo, open(err, encoding="utf-8") as fe:
                return reply["rc"], fo.read(), fe.read()


def run_cli(*args, timeout=60, preexec_fn=None):
    """``xapi-sim ARGS`` to completion: (exit status, stdout, stderr lines). (A new
    process each time; without ``preexec_fn``, forked from one that imported the command
    line already.)"""
    if preexec_fn is None:
        rc, out, err = _forked(args, timeout)
        return rc, out, err.splitlines()
    r = subprocess.run(
        [sys.executable, "-m", "xapi_sim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )
    return r.returncode, r.stdout, r.stderr.splitlines()


def refused(state_dir, command="serve", preexec_fn=None):
    """Run ``xapi-sim serve|export --state-dir`` expecting a refusal: (status, stderr)."""
    extra = ["--port", "0"] if command == "serve" else []
    return run_cli(
        command, "--state-dir", str(state_dir), *extra, timeout=30, preexec_fn=preexec_fn
    )


def digest(path) -> dict:
    """Every file and directory under ``path`` with its SHA-256 and mode (directories: their
    listing): equal digests mean nothing was touched."""
    out = {}
    path = str(path)
    if os.path.isfile(path):
        with open(path, "rb") as fh:
            return {"": (hashlib.sha256(fh.read()).hexdigest(), os.stat(path).st_mode)}
    for root, dirs, files in os.walk(path):
        rel = os.path.relpath(root, path)
        out[rel + "/"] = (sorted(dirs), sorted(files), os.stat(root).st_mode)
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.join(rel, f)] = (
                    hashlib.sha256(fh.read()).hexdigest(),
                    os.stat(p).st_mode,
                )
    return out


def lines(path) -> list[bytes]:
    """The complete lines of a journal file (without their newlines)."""
    with open(path, "rb") as fh:
        data = fh.read()
    return data.split(b"\n")[:-1]


def write_lines(path, items: list[bytes], tail=b""):
    with open(path, "wb") as fh:
        fh.write(b"".join(x + b"\n" for x in items) + tail)


def payload(line: bytes) -> dict:
    """The JSON of a version 2 journal line (checksum checked)."""
    crc, body = line[:8], line[9:]
    assert int(crc, 16) == zlib.crc32(body), line[:80]
    return json.loads(body)


def reframe(obj: dict) -> bytes:
    """A version 2 line with a good checksum (for lines of the wrong shape)."""
    return persist.frame(obj)[:-1]


def to_v1(state_dir):
    """Rewrite a version 2 directory as version 1 wrote it: no ``seq``, no checksums."""
    sp = os.path.join(state_dir, persist.STATE)
    with open(sp) as fh:
        snap = json.load(fh)
    snap["version"] = 1
    snap.pop("seq", None)
    snap.pop("supersedes", None)
    with open(sp, "w") as fh:
        json.dump(snap, fh, separators=(",", ":"))
    for name in persist.JOURNALS:
        p = os.path.join(state_dir, name)
        if os.path.exists(p):
            out = []
            for line in lines(p):
                obj = payload(line)
                obj.pop("seq")
                out.append(json.dumps(obj, separators=(",", ":")).encode())
            write_lines(p, out)
