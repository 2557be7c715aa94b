"""Run and time a package on a remote device through TVM's RPC tracker (a board farm, a Raspberry Pi, qemu).

A device runs `archc rpc-server --tracker HOST:PORT --key KEY` (TVM's `python -m tvm.exec.rpc_server`), which
registers it with a tracker (`python -m tvm.exec.rpc_tracker --host 127.0.0.1 --port PORT`); `archc run|profile|tune
--rpc HOST:PORT --rpc-key KEY` asks the tracker for a device of that key, uploads the library and runs it there. Like
the rest of archc.runtime, this needs only numpy and TVM's runtime.

A server runs whatever library a client uploads, without authentication (a key is a name, not a secret): archc's
listens on loopback unless told otherwise, and says what another address exposes (`exposure_warning`).
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import PackageError, last_line


class RemoteError(PackageError):
    """One sentence: why the remote device cannot be reached or used, and what to do."""


class RemoteUsageError(RemoteError):
    """--rpc and its companions given wrongly (a usage error: exit status 2)."""

    exit_code = 2


@dataclass(frozen=True)
class Remote:
    host: str
    port: int
    key: str

    @classmethod
    def parse(cls, address: str, key: str | None) -> Remote:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise RemoteUsageError(f"--rpc wants the tracker as HOST:PORT (e.g. 127.0.0.1:9190), not '{address}'",
                                   code="bad-rpc")
        if not key:
            raise RemoteUsageError("--rpc needs --rpc-key: the key the device registered with (archc rpc-server --key)",
                                   code="bad-rpc")
        return cls(host, int(port), key)

    def __str__(self) -> str:
        return f"{self.host}:{self.port} (key {self.key})"


def no_local_threads(threads: int | None, remote: Remote | None) -> None:
    """Threads are this machine's: a device behind a tracker runs on its server's."""
    if threads is not None and remote is not None:
        raise RemoteUsageError("threads are set on this machine; a device behind --rpc runs on its server's threads "
                          "(start `archc rpc-server` there with TVM_NUM_THREADS=N)", code="bad-usage")


def session(remote: Remote, timeout: float = 600) -> Any:
    """A session on a free device of the key; one sentence when there is no tracker or no such device."""
    return check(remote).request(remote.key, priority=1, session_timeout=timeout)


def check(remote: Remote) -> Any:
    """The tracker, once it is known to answer and to have a device of the key (else one sentence)."""
    from tvm import rpc
    try:
        socket.create_connection((remote.host, remote.port), timeout=5).close()
    except OSError as err:
        raise RemoteError(f"no RPC tracker answers at {remote.host}:{remote.port} ({err.strerror or err}); start "
                          f"one with `python -m tvm.exec.rpc_tracker --host {LOOPBACK} --port {remote.port}`",
                          code="no-tracker") from None
    tracker = rpc.connect_tracker(remote.host, remote.port)
    keys = dict(tracker.summary().get("queue_info", {}))
    if remote.key not in keys:
        known = ", ".join(sorted(keys)) or "none"
        raise RemoteError(f"no device is registered under the key '{remote.key}' at {remote.host}:{remote.port} "
                          f"(registered: {known}); start one with `archc rpc-server --tracker "
                          f"{remote.host}:{remote.port} --key {remote.key}`", code="no-device")
    return tracker


def device_cores(remote: Remote) -> int:
    """The device's core count as its TVM runtime sees it (its thread pool's size): MetaSchedule needs it."""
    return int(session(remote, timeout=60).get_function("runtime.NumThreads")())


def run(pkg: Any, inputs: dict[str, np.ndarray], remote: Remote, repeat: int = 0
        ) -> tuple[list[np.ndarray], list[float]]:
    """The package's outputs computed on the remote device, and `repeat` timed runs there (seconds each, timed on
    the device: the network is not in them)."""
    import tvm
    from tvm import relax
    sess = session(remote)
    library = pkg.manifest.library
    try:
        sess.upload(str(pkg.path / library))
        lib = sess.load_module(library)
    except Exception as err:
        why = last_line(str(err), type(err).__name__)
        raise RemoteError(f"the device {remote} could not load {library} ({why}); was the package built for its "
                          "CPU?", code="remote-load") from None
    dev = sess.cuda(0) if pkg.manifest.target.is_cuda else sess.cpu(0)
    vm = relax.VirtualMachine(lib, dev)
    args = [tvm.runtime.tensor(x, dev) for x in pkg.checked(inputs).values()]
    result = vm["main"](*args)
    items = list(result) if isinstance(result, (tuple, list)) or type(result).__name__ == "Array" else [result]
    outputs = [r.numpy() for r in items]
    times: list[float] = []
    if repeat:
        times = list(vm.time_evaluator("main", dev, number=1, repeat=repeat)(*args).results)
    return outputs, times


LOOPBACK = "127.0.0.1"  # where `archc rpc-server` listens unless --host says otherwise: this machine only


def is_loopback(host: str) -> bool:
    """Whether a server listening on `host` is reachable from this machine only: a loopback address (127.0.0.0/8,
    ::1) or 'localhost'. Any other name may resolve to an address on the network, so it counts as one."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The one sentence to print before a server starts listening on `host` (None on loopback): what it exposes,
    and how to reach it safely instead."""
    if is_loopback(host):
        return None
    return (f"an RPC server listening on {host} lets any client that reaches its port upload and run native code as "
            "this user (the tracker key is a name, not a secret); keep the default 127.0.0.1 and reach it through an "
            "SSH tunnel (ssh -L / ssh -R), or listen only on a private network")


def server_command(tracker: Remote, port: int = 9090, host: str = LOOPBACK, emulate: bool = False
                   ) -> tuple[list[str], dict[str, str] | None]:
    """The command line (and environment, None: this one) of TVM's RPC server registering with the tracker under
    its key. `emulate`: an aarch64 server under qemu (this machine's arm64 root, see qemu.py), a stand-in board."""
    import sys
    args = ["-m", "tvm.exec.rpc_server", f"--tracker={tracker.host}:{tracker.port}", f"--key={tracker.key}",
            f"--host={host}", f"--port={port}", f"--port-end={port + 100}"]
    if not emulate:
        return [sys.executable, *args], None
    # TVM's server starts itself in a fresh Python (its popen worker, `sys.executable`): under qemu-user without
    # binfmt_misc that is an aarch64 binary the host kernel cannot exec, so the emulated Python runs what that
    # worker would run, in-process (its connections are forked, which qemu-user supports)
    from .qemu import PYTHON, emulator
    board = emulator()
    # TVM's runtime library alone loads fast under qemu; its extra library has what MetaSchedule's runner calls
    extra = str(board.root / "site" / "tvm" / "lib" / "libtvm_runtime_extra.so")
    code = ("import time; from tvm.rpc.server import _popen_start_rpc_server as start; "
            f"start({host!r}, {port}, {port + 100}, tracker_addr=({tracker.host!r}, {tracker.port}), "
            f"key={tracker.key!r}, load_library={extra!r}); time.sleep(10 ** 9)")
    return [board.qemu, str(board.root / PYTHON), "-c", code], board.environment()
