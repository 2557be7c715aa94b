"""`archc analyze` on a terminal fits the terminal's width; piped or written to a file it keeps every column;
`--wide`, `--units`, `--totals`, and CSV as one table."""
from __future__ import annotations

import csv
import io
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPECS = ROOT / "specs"


def _env(columns: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def archc(*args: object, columns: int | None = None) -> subprocess.CompletedProcess[str]:
    """Standard output a pipe (not a terminal)."""
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=_env(columns))


def on_terminal(*args: object, rows: int = 50, cols: int = 100, columns_env: int | None = None) -> str:
    """Standard output a pseudo-terminal of `cols` columns (and COLUMNS set when `columns_env`)."""
    import fcntl
    import pty
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "archc", *map(str, args)], stdout=slave, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=ROOT, env=_env(columns_env))
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def widest(text: str) -> int:
    return max(len(line) for line in text.splitlines())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal sizes as on Linux")
def test_terminal_table_fits_the_terminal():
    out = on_terminal("analyze", SPECS / "resnet50.arch", cols=100)
    assert widest(out) <= 100
    assert "`--wide` prints the full table." in out
    assert "Left out, the same in every row that has one: groups = 1" in out
    header = next(line for line in out.splitlines() if line.startswith("Name"))
    assert header.split()[-2:] == ["Params", "MACs"]
    # COLUMNS overrides the terminal's own size, as shutil.get_terminal_size reads it
    out = on_terminal("analyze", SPECS / "resnet50.arch", "--by", "layer", cols=200, columns_env=90)
    assert widest(out) <= 90 and "Left out to fit a width of 90:" in out
    # a terminal wide enough: nothing fitted
    out = on_terminal("analyze", SPECS / "resnet50.arch", cols=200)
    assert "--wide" not in out and "groups" in out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pseudo-terminal sizes as on Linux")
def test_wide_prints_every_column_on_a_terminal():
    out = on_terminal("analyze", SPECS / "resnet50.arch", "--by", "layer", "--wide", cols=100)
    header = next(line for line in out.splitlines() if line.startswith("Layer"))
    assert header.split()[-3:] == ["RF", "Jump", "Start"] and len(header) > 150
    assert "--wide` prints" not in out


def test_pipe_and_file_keep_every_column(tmp_path):
    piped = archc("analyze", SPECS / "resnet50.arch", "--by", "layer", columns=80)  # COLUMNS alone is no terminal
    assert piped.returncode == 0, piped.stderr
    header = next(line for line in piped.stdout.splitlines() if line.startswith("Layer"))
    assert "Act. elements" in header and header.split()[-1] == "Start" and len(header) > 180
    out_file = tmp_path / "layers.txt"
    assert archc("analyze", SPECS / "resnet50.arch", "--by", "layer", "-o", out_file).returncode == 0
    assert out_file.read_text() == piped.stdout


def test_units_option():
    si = archc("analyze", SPECS / "resnet50.arch", "--units", "si").stdout
    total = next(line for line in si.splitlines() if line.startswith("Total"))
    assert total.split()[-2:] == ["25.56M", "4.09G"]
    exact = archc("analyze", SPECS / "resnet50.arch").stdout
    assert next(line for line in exact.splitlines() if line.startswith("Total")).split()[-2:] == [
        "25,557,032", "4,089,184,256"]
    many = archc("analyze", SPECS / "lenet5.arch", SPECS / "resnet18.arch", "--units", "exact").stdout
    assert "11,689,512" in many
    bad = archc("analyze", SPECS / "lenet5.arch", "--units", "kilo")
    assert bad.returncode == 2 and "Invalid value for '--units'" in bad.stderr


def test_csv_one_table_and_totals_on_request(tmp_path):
    out = archc("analyze", SPECS / "lenet5.arch", "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "\n\n" not in out.stdout
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0][0] == "Name" and "style" not in rows[0] and rows[-1][0] == "Total"
    totals = archc("analyze", SPECS / "lenet5.arch", "--format", "csv", "--totals")
    values = dict(list(csv.reader(io.StringIO(totals.stdout)))[1:])
    assert values["model"] == "lenet5" and int(values["params"]) > 0
    text = archc("analyze", SPECS / "lenet5.arch", "--totals").stdout
    assert "Parameters (trainable)" in text and "Patch/Stride" not in text
