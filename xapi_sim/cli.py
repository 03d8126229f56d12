"""``xapi-sim`` command line. ``xapi-sim serve`` is a contract harnesses rely on: keep it stable.

xapi-sim serve [--scenario FILE | --release NAME] [--xapi-db FILE ...] [--bind ADDR] [--port N]
               [--user NAME] [--password PW] [--seed N] [--ready-file PATH]
               [--tls-cert FILE --tls-key FILE] [--auth-delay SECONDS]
               [--state-dir DIR] [--log-level LEVEL] [--log-file FILE]
               [--allow-remote-migration] [--workers N]
xapi-sim export (--state-dir DIR | --scenario FILE | --xapi-db FILE)
                [--format scenario|xmldbdump] [--pool NAME] [-o FILE]
xapi-sim repair --state-dir DIR
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterable

import attrs

from . import multiproc, multiproc_forward, persist, playback, playback_dump, products
from . import scenario as scn_mod
from .bench import main as bench_main
from .errors import Failure
from .server import Simulator
from .sessions import AUTH_FAILURE_DELAY  # XAPI's, from xapi_session.ml

DEFAULT_PORT = 8080
DEFAULT_USER = "root"
DEFAULT_PASSWORD = "xenroot"


def _auth_delay(text):
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 <= v <= 600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 600, got {text!r}")
    return v


def _serve_parser(sub):
    p = sub.add_parser("serve", help="start a simulated pool and serve XAPI on every host")
    p.add_argument(
        "--scenario",
        metavar="FILE",
        help="scenario file (TOML, or JSON of the same shape); default: built-in",
    )
    p.add_argument(
        "--release",
        metavar="NAME",
        help="the release every host of the built-in world runs: "
        + ", ".join(f"{n} ({p.title})" for n, p in products.PROFILES.items())
        + f" (or its product version); default {products.DEFAULT_RELEASE} (docs/releases.md)",
    )
    p.add_argument(
        "--xapi-db",
        action="append",
        default=[],
        metavar="FILE",
        help="load a real pool's database (a status report's xapi-db.xml, an "
        "xmldbdump or state.db) as a pool of the world; repeatable; with "
        "--scenario, added to the scenario's world (docs/playback.md)",
    )
    p.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="address of the first host; on loopback the others take the next "
        "addresses (127.0.0.2, ...) on the same port (default 127.0.0.1)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="N",
        help=f"port every host listens on; 0 = any free port (default {DEFAULT_PORT})",
    )
    p.add_argument("--user", default=DEFAULT_USER, help="root user name (default root)")
    p.add_argument(
        "--password",
        default=DEFAULT_PASSWORD,
        help=f"starting root password of every pool; session.change_password "
        f"changes one pool's (default {DEFAULT_PASSWORD})",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="make every UUID and ref reproducible from run to run",
    )
    p.add_argument(
        "--ready-file",
        metavar="PATH",
        help="once every host listens, atomically write a JSON description here",
    )
    p.add_argument(
        "--tls-cert",
        metavar="FILE",
        help="present this certificate on every host (default: a self-signed one "
        "per host, made at first start; HTTP and HTTPS share each port "
        "either way) and give clients https:// URLs",
    )
    p.add_argument("--tls-key", metavar="FILE", help="private key for --tls-cert")
    p.add_argument(
        "--auth-delay",
        type=_auth_delay,
        default=AUTH_FAILURE_DELAY,
        metavar="SECONDS",
        help="wait before SESSION_AUTHENTICATION_FAILED, as XAPI does against "
        f"brute force (default {AUTH_FAILURE_DELAY:g}, XAPI's; 0 for tests)",
    )
    p.add_argument(
        "--allow-remote-migration",
        action="store_true",
        help="let VM.migrate_send reach destination pools on other machines "
        "(default: other xapi-sim processes on loopback only)",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        help="keep the world durable here: every acknowledged change survives a "
        "crash; a directory holding a world resumes it",
    )
    p.add_argument(
        "--log-level",
        default="WARNING",
        type=_log_level,
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING (default) or ERROR: internal errors are "
        "logged with their traceback",
    )
    p.add_argument(
        "--log-file", metavar="FILE", help="append the log here instead of standard error"
    )
    p.add_argument(
        "--workers",
        type=_workers,
        default=1,
        metavar="N",
        help="serve the world's pools in N processes (each pool whole in one; a standalone "
        "host is a pool of one); one ready file and one control API for the world; "
        "default 1 (docs/performance.md)",
    )
    return p


def _workers(text):
    try:
        v = int(text, 10)
    except ValueError:
        v = 0
    if not 1 <= v <= 64:
        raise argparse.ArgumentTypeError(
            f"expected a number of processes from 1 to 64, got {text!r}"
        )
    return v


def _log_level(text):
    level = logging.getLevelName(text.upper())
    if not isinstance(level, int):
        raise argparse.ArgumentTypeError(f"expected DEBUG, INFO, WARNING or ERROR, got {text!r}")
    return level


def setup_logging(level, log_file=None):
    """The ``xapi_sim`` logger: every module logs to it (``logging.getLogger(__name__)``)."""
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    )
    logger = logging.getLogger("xapi_sim")
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False


def _export_parser(sub):
    p = sub.add_parser("export", help="write a world as a scenario file that loads back")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--state-dir", metavar="DIR", help="the world kept in this state dir")
    src.add_argument("--scenario", metavar="FILE", help="a scenario file (round trip)")
    src.add_argument(
        "--xapi-db", metavar="FILE", help="a real pool's database, loaded as `serve --xapi-db` does"
    )
    p.add_argument(
        "--format",
        choices=("scenario", "xmldbdump"),
        default="scenario",
        help="a scenario file (default), or one pool's database in xapi's XML "
        "format, as GET /pool/xmldbdump serves it",
    )
    p.add_argument(
        "--pool",
        metavar="NAME",
        help="with --format xmldbdump: the pool (name, uuid or master's name) "
        "when the world has several",
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return p


def export(args) -> int:
    try:
        if args.state_dir:
            world, _ = persist.load(args.state_dir)
        elif args.xapi_db:
            world, _ = playback.load_world([args.xapi_db], seed=0)
        else:
            world = scn_mod.build(scn_mod.load(args.scenario), seed=0)
        chunks: Iterable[str]
        if args.format == "xmldbdump":
            chunks = playback_dump.dump(playback_dump.find_pool(world, args.pool))
        else:
            chunks = [scn_mod.export_toml(world)]
        if args.output:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.writelines(chunks)
        else:
            sys.stdout.writelines(chunks)
    except (persist.StateError, scn_mod.ScenarioError, playback.PlaybackError) as e:
        print(f"xapi-sim: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"xapi-sim: cannot write {args.output}: {e.strerror}", file=sys.stderr)
        return 2
    return 0


def _build(args, scn):
    """The world to serve: the scenario's (none when only --xapi-db is given), plus one
    pool per --xapi-db file. Raises ScenarioError / PlaybackError."""
    kw = {
        "seed": args.seed,
        "user": args.user,
        "password": args.password,
        "auth_failure_delay": args.auth_delay,
    }
    if args.xapi_db and scn is None:
        return playback.load_world(args.xapi_db, **kw)[0]
    world = scn_mod.build(scn, **kw)
    if args.xapi_db:
        playback.load_world(args.xapi_db, world=world)
    return world


def _repair_parser(sub):
    p = sub.add_parser(
        "repair",
        help="cut a damaged --state-dir journal at its first bad "
        "line, keeping a backup of the files",
    )
    p.add_argument(
        "--state-dir",
        metavar="DIR",
        required=True,
        help="the state dir serve refused to start from",
    )
    return p


def repair(args) -> int:
    try:
        done = persist.repair(args.state_dir)
    except persist.StateError as e:
        print(f"xapi-sim: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"xapi-sim: {args.state_dir}: repair failed: {e}", file=sys.stderr)
        return 1
    print(f"xapi-sim: {done}")
    return 0


def with_release(scn, name: str):
    """The scenario with every host running the release ``name`` (a profile name or product
    version, products.lookup); ValueError for an unknown one."""
    version = products.lookup(name).version
    hosts = tuple(attrs.evolve(h, version=version) for h in scn.hosts)
    out = attrs.evolve(scn, hosts=hosts, source=f"{scn.source} as {name}")
    try:
        scn_mod.check_pools(out)
    except scn_mod.ScenarioError as e:
        raise ValueError(
            f"the built-in world cannot run as {name}: {e}; start a scenario written for it "
            "instead (xapi-sim serve --scenario examples/rpu-from-6.5.toml for 6.5 SP1)"
        ) from None
    return out


def serve(args) -> int:

    try:
        setup_logging(args.log_level, args.log_file)
    except OSError as e:
        print(f"xapi-sim: cannot open the log file {args.log_file}: {e.strerror}", file=sys.stderr)
        return 2

    if args.release is not None and (args.scenario or args.xapi_db):
        print(
            "xapi-sim: --release picks the release of the built-in world; a scenario or a "
            "database names its hosts' releases itself (host key version)",
            file=sys.stderr,
        )
        return 2
    try:
        scn = (
            scn_mod.load(args.scenario)
            if args.scenario
            else None
            if args.xapi_db
            else scn_mod.default()
        )
    except scn_mod.ScenarioError as e:
        print(f"xapi-sim: {e}", file=sys.stderr)
        return 2
    if args.release is not None:
        try:
            scn = with_release(scn, args.release)
        except ValueError as e:
            print(f"xapi-sim: --release: {e}", file=sys.stderr)
            return 2
    source = ", ".join(([scn.source] if scn is not None else []) + args.xapi_db)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("xapi-sim: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    worker = multiproc.worker_spec()
    if worker is not None and scn is not None:  # a child of serve --workers: its share
        scn = multiproc.sub_scenario(scn, worker["hosts"])
    elif args.workers > 1:
        if args.state_dir or args.xapi_db or scn is None:
            print(
                f"xapi-sim: --workers: {'--state-dir' if args.state_dir else '--xapi-db'} is "
                "served by one process only; drop --workers (docs/performance.md)",
                file=sys.stderr,
            )
            return 2
        return multiproc.run_parent(args, scn, source)
    journal = None
    try:
        if args.state_dir:
            try:
                world, journal, what = persist.open_state(
                    args.state_dir, lambda: _build(args, scn), auth_failure_delay=args.auth_delay
                )
            except persist.StateError as e:
                print(f"xapi-sim: {e}", file=sys.stderr)
                return 2
            if what.startswith("new state dir"):
                print(f"xapi-sim: {what}, seeded from {source}")
            else:
                print(
                    f"xapi-sim: {what}"
                    + (
                        "; --scenario/--xapi-db only seed an empty state dir, ignored"
                        if args.scenario or args.xapi_db
                        else ""
                    )
                )
        else:
            world = _build(args, scn)
    except (scn_mod.ScenarioError, playback.PlaybackError) as e:
        print(f"xapi-sim: {e}", file=sys.stderr)
        return 2
    world.allow_remote_migration = args.allow_remote_migration
    if args.state_dir:
        world.vdi_dir = os.path.join(args.state_dir, "vdis")  # disk contents (vdi_store.py)
    _raise_fd_limit()
    cert_dir = os.path.join(args.state_dir, "certs") if args.state_dir else None
    try:
        sim = Simulator(
            world,
            bind=args.bind,
            port=args.port,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            cert_dir=cert_dir,
        )
    except (OSError, ValueError) as e:  # ssl.SSLError is an OSError
        print(f"xapi-sim: cannot load --tls-cert/--tls-key: {e}", file=sys.stderr)
        return 2
    control_port = multiproc_forward.install(sim, worker) if worker is not None else None
    try:
        if journal is not None:
            sim.make_durable(journal)
        sim.start()
    except OSError as e:
        print(f"xapi-sim: cannot listen on {args.bind}:{args.port}: {e.strerror}", file=sys.stderr)
        sim.stop()
        return 1
    except Failure as e:
        # the journal refused to record where the hosts listen (the disk filled up)
        print(
            f"xapi-sim: cannot record the hosts' addresses in {args.state_dir}: "
            f"{' '.join(e.description)}",
            file=sys.stderr,
        )
        sim.stop()
        return 1
    # The world is built: move it out of the cyclic collector's sight (it lives as long as
    # the process), so the full collections that the allocations of big replies and xe
    # listings trigger do not scan every row of a 100,000-VM world each time.
    gc.freeze()
    desc = sim.describe()
    for line in playback_dump.describe_reports(world):
        print(line)
    print(f"xapi-sim: {len(desc['hosts'])} hosts from {source}")
    multiproc.print_host_table(desc)
    loaded = playback_dump.address_table(world)
    if loaded:
        print(f"{'RECORDED ADDRESS':<18} {'HOST':<12} {'POOL':<12} URL")
        for entry in loaded:
            print(
                f"{entry['recorded_address'] or '-':<18} {entry['name_label']:<12} "
                f"{entry['pool'] or '-':<12} {entry['url']}"
            )
    print(
        "TLS: "
        + (
            f"{args.tls_cert} on every host"
            if args.tls_cert
            else f"a self-signed certificate per host (made at its first TLS client), "
            f"in {sim.certs.directory}"
        )
    )
    print(f"login: {world.user} / {world.password}    (Ctrl-C to stop)", flush=True)
    if args.ready_file:
        sim.write_ready_file(args.ready_file)
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.wait(0.5):
        if worker is not None and os.getppid() != worker["parent"]:
            break  # the parent of serve --workers is gone: so are its children
    if control_port is not None:
        control_port.stop()
    sim.stop()
    if journal is not None:
        journal.sync()
        journal.close()
    print("xapi-sim: stopped", flush=True)
    return 0


def _raise_fd_limit():
    """Each connection is a file descriptor, not a thread: let the process hold many
    (soft RLIMIT_NOFILE up to the hard limit, at most 65536)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass  # no resource module or a hard limit we may not raise: keep the default


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="xapi-sim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _export_parser(sub)
    _repair_parser(sub)
    sub.add_parser("bench", help="run the benchmarks (see scripts/bench.py)", add_help=False)
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "bench":
        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args)
    if args.command == "export":
        return export(args)
    if args.command == "repair":
        return repair(args)
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
