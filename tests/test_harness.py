"""The local-fleet harness starts its own servers: a port found free but taken before the child binds it (another
process on a shared machine) never leaves a fleet talking to somebody else's Redis or simulator."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from toolbag.devfleet import harness
from toolbag.devfleet.harness import HarnessError, Processes, private_redis, redis_pid, start_redis, start_simulator
from toolbag.simulator.server import SimulatorServer


def port_of(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture
def first_free_port_taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """``free_port`` answers the port in the list once (taken by then), then really free ports."""
    taken: list[int] = []
    real = harness.free_port

    def racing() -> int:
        return taken.pop() if taken else real()

    monkeypatch.setattr(harness, "free_port", racing)
    yield taken


def test_a_redis_port_lost_before_the_bind_is_replaced_and_never_someone_elses(
        first_free_port_taken: list[int]) -> None:
    with private_redis() as other:
        first_free_port_taken.append(other.port)
        server = start_redis()
        try:
            assert server.port != other.port and server.proc.poll() is None
            assert redis_pid(server.url) == server.proc.pid
        finally:
            server.stop()


def test_a_redis_port_asked_for_and_taken_is_an_error() -> None:
    with private_redis() as other, pytest.raises(HarnessError, match=f"port {other.port}"):
        start_redis(other.port)


def test_a_simulator_port_lost_before_the_bind_is_replaced_and_never_someone_elses(
        first_free_port_taken: list[int], tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    with SimulatorServer() as other:
        first_free_port_taken.append(port_of(other.url))
        try:
            sim = start_simulator(processes)
            assert port_of(sim.url) != port_of(other.url) and sim.proc.poll() is None
            assert harness._simulator_pid(sim.url) == sim.proc.pid
        finally:
            processes.stop()


def test_a_simulator_port_asked_for_and_taken_is_an_error(tmp_path: Path) -> None:
    processes = Processes(tmp_path)
    with SimulatorServer() as other:
        try:
            with pytest.raises(HarnessError, match="did not start"):
                start_simulator(processes, port=port_of(other.url))
        finally:
            processes.stop()


def test_the_api_dev_starts_is_its_own_even_when_its_port_is_taken_after_the_check(
        redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from toolbag.config import load_config
    from toolbag.devfleet import dev

    with SimulatorServer() as other:  # another HTTP server on the port dev found free a moment before
        monkeypatch.setattr(dev, "port_free", lambda port: True)
        fleet = harness.LocalFleet(load_config(), redis_url, tmp_path)
        try:
            url, key = dev._start_api(fleet, tmp_path, preferred_port=port_of(other.url))
            assert port_of(url) != port_of(other.url) and fleet.procs["api"].poll() is None
            request = urllib.request.Request(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"})
            with urllib.request.urlopen(request, timeout=10) as answer:
                assert answer.status == 200, "the api answering accepts the key dev printed"
        finally:
            fleet.stop()
