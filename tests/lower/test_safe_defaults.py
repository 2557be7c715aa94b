"""Where archc runs code for others (README: Security): `archc rpc-server` listens on loopback unless told
otherwise and warns, once, of any other address. TVM-free: no server starts (the RPC server itself runs in
test_rpc.py)."""
from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from archc.cli import main
from archc.runtime.rpc import LOOPBACK, Remote, exposure_warning, is_loopback, server_command

WARNING = "archc: warning: "


def _rpc_server(monkeypatch, *options: str) -> tuple[list[str], str]:
    """`archc rpc-server --tracker 127.0.0.1:9190 --key k OPTIONS`: the command it would exec, and its stderr. The
    exec is replaced (a mock at the edge: the real server runs in test_rpc.py)."""
    started: list[list[str]] = []
    monkeypatch.setattr(os, "execvpe", lambda file, args, env: started.append(args))
    result = CliRunner().invoke(main, ["rpc-server", "--tracker", "127.0.0.1:9190", "--key", "k", *options])
    assert result.exit_code == 0 and len(started) == 1, (result.output, result.exception)
    return started[0], result.stderr


# ---- the RPC server -----------------------------------------------------------------------------------------------
def test_the_rpc_server_listens_on_loopback_by_default(monkeypatch):
    option = next(p for p in main.commands["rpc-server"].params if p.name == "host")
    assert option.default == LOOPBACK and is_loopback(LOOPBACK)
    assert f"--host={LOOPBACK}" in server_command(Remote("127.0.0.1", 9190, "k"))[0]
    command, stderr = _rpc_server(monkeypatch)
    assert f"--host={LOOPBACK}" in command and WARNING not in stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LocalHost"])
def test_loopback_addresses_are_loopback(host):
    assert is_loopback(host) and exposure_warning(host) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "10.0.0.7", "fe80::1", "board.local", "example.org"])
def test_any_other_address_or_name_is_not(host):
    assert not is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20"])
def test_a_server_on_another_address_warns_once_with_what_it_exposes_and_how_to_avoid_it(monkeypatch, host):
    command, stderr = _rpc_server(monkeypatch, "--host", host)
    assert f"--host={host}" in command  # asked for: still served
    warnings = [line for line in stderr.splitlines() if line.startswith(WARNING)]
    assert warnings == [WARNING + exposure_warning(host)], stderr
    for fragment in (host, "upload and run native code", "not a secret", "ssh -L", "ssh -R", "private network"):
        assert fragment in warnings[0]
