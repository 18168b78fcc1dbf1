"""`--address` to a Ray cluster nothing answers at: every command that takes one (`steerability`,
`partials`, `learn sweep`) refuses it in one line naming the address, within a bounded time, before
anything is written (ray.init alone retried such an address without end). No cluster is needed: a
closed local port, and a silent address simulated at the socket."""

from __future__ import annotations

import socket
import time

import pytest
from click.testing import CliRunner
from conftest import import_or_skip

ray = import_or_skip("ray")  # the one reason to skip: the ray extra is not installed

COMMANDS = {
    "steerability": ["steerability", "-m", "stft_24khz", "-C", "loudness", "--quick"],
    "partials": ["partials", "--quick"],
    "sweep": ["learn", "sweep", "-l", "encoder.5.elu", "--data", "synth:1", "--clip-seconds", "0.3"],
}


def _closed_port() -> int:
    with socket.socket() as s:  # bound and closed at once: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("name", COMMANDS)
def test_an_address_nothing_answers_is_refused_in_one_line(name, tmp_path):
    from steerlab.cli import get_cli

    assert not ray.is_initialized()  # else the executor would use that cluster and never connect
    address = f"127.0.0.1:{_closed_port()}"
    out = tmp_path / name
    started = time.monotonic()
    res = CliRunner().invoke(get_cli(), [*COMMANDS[name], "-o", str(out), "--executor", "ray", "--address", address])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1, res.output
    assert lines[0].startswith(f"Error: cannot connect to Ray at '{address}'") and "head node" in lines[0]
    assert not out.exists() and not ray.is_initialized()
    assert time.monotonic() - started < 30  # a refused port fails at once (the bound is CONNECT_TIMEOUT_S)


def test_a_silent_address_is_refused_after_the_connect_timeout(monkeypatch):
    from steerlab import executors
    from steerlab.errors import SteerlabError

    waited = []

    def silent(where, timeout):
        waited.append((where, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", silent)
    with pytest.raises(SteerlabError, match=r"'ray://head:10001' \(nothing answered within 20 s\)"):
        executors.RayExecutor("ray://head:10001")
    assert waited == [(("head", 10001), executors.CONNECT_TIMEOUT_S)] and executors._host_port("auto") is None
