"""The Procfile (``make run``) and docker-compose.yml (containers) start the same processes with the same commands.

Each Procfile line is read as the shell would run it under the compose service's environment (``${NAME:-default}``
filled from the service's variables, else the default), and must give exactly the compose service's command; the
``NAME=value`` assignments in front of a line must be in the service's environment. No Docker is needed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from tests.conftest import served_queues

ROOT = Path(__file__).resolve().parent.parent
# Compose services that are not processes of the Procfile: the two servers, and the one-shot schema migration that
# `make run` does before starting the Procfile (scripts/devstack.py).
NOT_IN_PROCFILE = {"postgres", "redis", "migrate"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::-([^${}]*))?\}")
_ASSIGNMENT = re.compile(r"(\w+)=(.*)")


def procfile() -> dict[str, str]:
    processes = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def compose() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    return services


def as_run_with(command: str, environment: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The assignments and the argument list of a Procfile command, its variables filled from ``environment``."""
    while True:  # innermost first: a default may hold another variable
        expanded = _VARIABLE.sub(lambda m: environment.get(m.group(1), m.group(2) or ""), command)
        if expanded == command:
            break
        command = expanded
    words = shlex.split(command)
    assignments = {}
    while words and (assignment := _ASSIGNMENT.fullmatch(words[0])):
        assignments[assignment.group(1)] = assignment.group(2)
        words.pop(0)
    return assignments, words


def test_compose_runs_every_procfile_process_and_nothing_else_of_ours() -> None:
    assert set(compose()) - NOT_IN_PROCFILE == set(procfile())


def test_each_compose_service_runs_its_procfile_command() -> None:
    services = compose()
    for name, command in procfile().items():
        service = services[name]
        environment = {key: str(value) for key, value in (service.get("environment") or {}).items()}

        assignments, argv = as_run_with(command, environment)

        assert argv == service["command"], name
        for variable, value in assignments.items():
            assert environment.get(variable) == value, f"{name}: {variable}"


def test_the_worker_serves_every_queue_a_task_is_routed_to() -> None:
    _, argv = as_run_with(procfile()["worker"], {})

    assert sorted(argv[argv.index("--queues") + 1].split(",")) == served_queues()


def test_the_web_and_the_worker_count_into_one_metrics_directory() -> None:
    # /metrics adds up the counts of every process that shares the directory (ops/metrics.py)
    services = compose()
    mounts = {name: set(services[name].get("volumes") or []) for name in ("web", "worker", "relay", "beat")}
    shared = set.intersection(*mounts.values())

    assert "metrics:/run/marketpay/metrics" in shared
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "PROMETHEUS_MULTIPROC_DIR=/run/marketpay/metrics" in dockerfile
