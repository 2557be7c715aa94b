"""Where archc runs code for others, or code others could have written (README: Security): `archc rpc-server`
listens on loopback unless told otherwise and warns, once, of any other address; loading a package that another
user could have changed warns once per package. TVM-free: no server starts, no library loads (the RPC server itself
runs in test_rpc.py, started as the README starts it)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import fake_package

from archc import runtime
from archc.cli import main
from archc.runtime import load_package
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


# ---- packages others could have written ---------------------------------------------------------------------------
@pytest.fixture
def warned(monkeypatch, capsys):
    """The warning lines load_package prints from now on, in a process that has warned of no package yet."""
    monkeypatch.setattr(runtime, "_WARNED", set())
    capsys.readouterr()
    return lambda: [line for line in capsys.readouterr().err.splitlines() if line.startswith(WARNING)]


def _in(folder: Path, mode: int) -> Path:
    """A package in `folder`, which gets `mode`."""
    folder.mkdir()
    os.chmod(folder, mode)
    return fake_package(folder / "pkg")


def test_a_package_of_ones_own_loads_without_a_word(tmp_path, warned):
    load_package(fake_package(tmp_path / "pkg"))
    load_package(_in(tmp_path / "shared", 0o1777))  # anyone may add to a sticky folder, not replace what is yours
    assert warned() == []


def test_a_package_in_a_folder_anyone_may_write_to_warns_once(tmp_path, warned):
    folder = _in(tmp_path / "shared", 0o777)
    for _ in range(2):  # archc bench loads a package twice: one warning
        load_package(folder)
    assert warned() == [f"{WARNING}the package '{folder}' is native code that runs as you, and it lies in "
                        f"'{tmp_path / 'shared'}', which anyone may write to: run it only if you trust whoever could "
                        "have written it"]


@pytest.mark.parametrize(("writable", "mode", "says"), [
    (".", 0o777, "anyone may write to its folder"),
    ("lenet5.so", 0o666, "anyone may write to its library lenet5.so"),
])
def test_a_package_anyone_may_write_to_warns(tmp_path, warned, writable, mode, says):
    folder = fake_package(tmp_path / "pkg")
    os.chmod(folder / writable, mode)
    load_package(folder)
    lines = warned()
    assert len(lines) == 1 and says in lines[0], lines


def test_a_package_of_another_user_warns(tmp_path, warned, monkeypatch):
    folder = fake_package(tmp_path / "pkg")
    owner = folder.stat().st_uid
    # a mock at the edge: the test cannot make a folder of another user (that needs root), so this process
    # pretends to be another user
    monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    load_package(folder)
    lines = warned()
    assert len(lines) == 1 and f"its folder belongs to another user (uid {owner})" in lines[0], lines
