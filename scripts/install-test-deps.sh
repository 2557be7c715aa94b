#!/usr/bin/env bash
# Everything the test suite needs outside pip, on a Debian 12 (bookworm) x86-64 machine, installed idempotently:
#
#  1. Debian packages: the aarch64 cross compilers, qemu-user-static, build-essential and g++, chromium, pdflatex
#     (texlive) and Graphviz (apt-get, only what is missing).
#  2. An arm64 Python root that runs aarch64 packages under qemu (archc/runtime/qemu.py), in
#     ${ARCHC_ARM64_ROOT:-$HOME/.cache/archc/arm64}:
#       <root>/usr, <root>/lib   Debian's arm64 python3.11 and the libraries it and TVM load (dpkg -x, no install)
#       <root>/site              the aarch64 wheels of the host's TVM, tvm-ffi, numpy, ... (same versions)
#       <root>/archc-arm64.stamp what is installed; written last, after Python under qemu imported TVM
#     Run it as QEMU_LD_PREFIX=<root> PYTHONHOME=<root>/usr PYTHONPATH=<root>/site PYTHONNOUSERSITE=1 \
#                qemu-aarch64-static <root>/usr/bin/python3.11
#
# A second run checks and returns in about a second; a change of the host's TVM (or numpy, ...) version, or of the
# lists below, reinstalls what changed. Environment: ARCHC_ARM64_ROOT (the root), PYTHON (the host Python whose
# package versions are mirrored; default: python, else python3).
set -euo pipefail

say() { printf 'install-test-deps: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }
trap 'die "failed at line $LINENO (exit $?): see the messages above"' ERR

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
ROOT="${ARCHC_ARM64_ROOT:-$HOME/.cache/archc/arm64}"
STAMP="$ROOT/archc-arm64.stamp"
LAYOUT=1  # bump when the root's layout or the way it is made changes: every root is then made again

APT_PACKAGES=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static build-essential g++)
APT_PACKAGES+=(chromium)  # the headless browser that opens `archc report` pages in tests/render/test_report.py
# pdflatex with booktabs (the LaTeX tables are compiled in tests/render) and Graphviz's dot (the report's drawing)
APT_PACKAGES+=(texlive-latex-base texlive-latex-recommended graphviz)
# Debian's arm64 Python 3.11 and every shared library that it, its extension modules and the wheels below load
ARM64_DEBS=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 libstdc++6 libexpat1
            zlib1g libffi8 libssl3 libbz2-1.0 liblzma5 libuuid1 libsqlite3-0 libcrypt1 libtinfo6
            libncursesw6 libreadline8)
# aarch64 wheels, at the host's versions: TVM's runtime, its Python dependencies, and what its RPC server imports
WHEELS=(apache-tvm apache-tvm-ffi numpy ml_dtypes typing_extensions psutil cloudpickle tornado)

[ "$(uname -m)" = x86_64 ] || die "this script sets up aarch64 emulation on an x86-64 host; this is $(uname -m)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null \
  || die "needs a Debian/Ubuntu machine (apt-get and dpkg); install the packages above by hand elsewhere"
SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || die "needs root (or sudo) for apt-get"
  SUDO=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
APT=("${SUDO[@]}" apt-get -q -o DPkg::Lock::Timeout=300)
APT_UPDATED=0
apt_update() {
  if [ "$APT_UPDATED" = 0 ]; then
    say "apt-get update"
    "${APT[@]}" update >/dev/null || die "apt-get update failed"
    APT_UPDATED=1
  fi
}
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }

# ---- 1. host packages ---------------------------------------------------------------------------------------
missing=()
for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt_update
  say "apt-get install ${missing[*]}"
  "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
QEMU="$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)"
[ -n "$QEMU" ] || die "qemu-aarch64-static is not on PATH after installing qemu-user-static"
command -v aarch64-linux-gnu-gcc >/dev/null || die "aarch64-linux-gnu-gcc is not on PATH after installing it"

# ---- 2. the arm64 Python root -------------------------------------------------------------------------------
PY="${PYTHON:-$(command -v python || command -v python3 || true)}"
[ -n "$PY" ] || die "no host Python (python or python3) on PATH; set PYTHON"
# The versions to mirror: the host's installed ones; for one not installed yet (a clean machine runs this before
# `pip install -e '.[test]'`), the pin in pyproject.toml, else the newest.
mapfile -t REQS < <("$PY" - "$REPO/pyproject.toml" "${WHEELS[@]}" <<'EOF'
import importlib.metadata as md, re, sys, tomllib
pins = {}
try:
    with open(sys.argv[1], "rb") as f:
        project = tomllib.load(f)["project"]
    for req in project.get("dependencies", []) + sum(project.get("optional-dependencies", {}).values(), []):
        m = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*", req)
        if m:
            pins[re.sub(r"[-_.]+", "-", m[1]).lower()] = m[2]
except (OSError, KeyError, ValueError):
    pass
for name in sys.argv[2:]:
    try:
        version = md.version(name)
    except md.PackageNotFoundError:
        version = pins.get(re.sub(r"[-_.]+", "-", name).lower())
    print(f"{name}=={version}" if version else name)
EOF
)
[ ${#REQS[@]} -eq ${#WHEELS[@]} ] || die "could not read the host's package versions with $PY"

WANT="layout $LAYOUT
debs ${ARM64_DEBS[*]}
wheels ${REQS[*]}"
if [ -f "$STAMP" ] && [ "$(sed -n '1,3p' "$STAMP")" = "$WANT" ] && [ -x "$ROOT/usr/bin/python3.11" ]; then
  echo "install-test-deps: up to date: $QEMU; arm64 Python root $ROOT (TVM $(sed -n 's/^tvm //p' "$STAMP"))"
  exit 0
fi
rm -f "$STAMP"  # from here on the root is incomplete until the stamp is written again
mkdir -p "$ROOT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# Debian's arm64 packages, unpacked (never installed: dpkg -x)
if [ ! -f "$ROOT/.debs" ] || [ "$(cat "$ROOT/.debs")" != "layout $LAYOUT ${ARM64_DEBS[*]}" ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    say "dpkg --add-architecture arm64"
    "${SUDO[@]}" dpkg --add-architecture arm64
    APT_UPDATED=0
  fi
  apt_update
  say "downloading ${#ARM64_DEBS[@]} arm64 packages (python3.11 and its libraries)"
  # apt downloads as its own user (_apt): the folder is _apt's alone, not writable by every user (a .deb slipped
  # in before `dpkg -x` would end up in the Python that runs archc's arm64 code)
  chmod 755 "$WORK"
  if id -u _apt >/dev/null 2>&1; then "${SUDO[@]}" install -d -m 755 -o _apt "$WORK/debs"; else mkdir "$WORK/debs"; fi
  (cd "$WORK/debs" && "${APT[@]}" download "${ARM64_DEBS[@]/%/:arm64}" >/dev/null) \
    || die "apt-get download of the arm64 packages failed (needs Debian 12's arm64 archive: ${ARM64_DEBS[*]})"
  find "$ROOT" -mindepth 1 -maxdepth 1 ! -name site ! -name .site -exec rm -rf {} +
  for deb in "$WORK"/debs/*.deb; do dpkg -x "$deb" "$ROOT"; done
  "${SUDO[@]}" rm -rf "$WORK/debs"
  # Debian compiles the stdlib's bytecode when installing; dpkg -x does not. Bytecode is the same for every 3.11.x,
  # so the host compiles it (Python under qemu would otherwise compile each module on its first import, slowly).
  if [[ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 11))')" == True ]]; then
    "$PY" -m compileall -q -j 0 "$ROOT/usr/lib/python3.11" >/dev/null 2>&1 || true
  fi
  echo "layout $LAYOUT ${ARM64_DEBS[*]}" >"$ROOT/.debs"
fi
[ -x "$ROOT/usr/bin/python3.11" ] || die "the arm64 packages did not give $ROOT/usr/bin/python3.11"

# the aarch64 wheels (pip install --target: unpacked like pip does, with their bytecode compiled by the host)
if [ ! -f "$ROOT/.site" ] || [ "$(cat "$ROOT/.site")" != "${REQS[*]}" ] || [ ! -d "$ROOT/site" ]; then
  say "downloading the aarch64 wheels: ${REQS[*]}"
  platforms=()
  for v in 36 35 34 33 32 31 28 27 26 17; do platforms+=(--platform "manylinux_2_${v}_aarch64"); done
  rm -rf "$ROOT/site.new"
  PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q --disable-pip-version-check --no-warn-script-location \
        --target "$ROOT/site.new" --only-binary=:all: --no-deps --implementation cp --python-version 3.11 \
        --abi cp311 "${platforms[@]}" --platform manylinux2014_aarch64 "${REQS[@]}" >"$WORK/pip.log" 2>&1 \
    || { grep -v "^WARNING: Location .* is ignored" "$WORK/pip.log" | tail -n 20 >&2
         die "pip could not get the aarch64 wheels of ${REQS[*]} (above)"; }
  rm -rf "$ROOT/site.new/bin" "$ROOT/site"
  mv "$ROOT/site.new" "$ROOT/site"
  echo "${REQS[*]}" >"$ROOT/.site"
fi

# Check it: Python under qemu imports TVM (with the Relax VM) and numpy. This also writes any bytecode still missing.
say "checking Python under qemu (import tvm, numpy)"
found="$(env -u PYTHONSTARTUP -u PYTHONSAFEPATH -u VIRTUAL_ENV -u LD_LIBRARY_PATH -u LD_PRELOAD \
         QEMU_LD_PREFIX="$ROOT" PYTHONHOME="$ROOT/usr" PYTHONPATH="$ROOT/site" PYTHONNOUSERSITE=1 \
         "$QEMU" "$ROOT/usr/bin/python3.11" -c \
         'import platform, numpy, tvm, tvm.relax; print("tvm", tvm.__version__); print("numpy", numpy.__version__); print("machine", platform.machine())' \
         2>"$WORK/check.err")" \
  || { tail -n 5 "$WORK/check.err" >&2; die "Python under qemu could not import TVM from $ROOT (above)"; }
grep -qx "machine aarch64" <<<"$found" || die "Python under qemu does not say aarch64: $found"
{ echo "$WANT"; echo "$found" | grep -v '^machine'; } >"$STAMP.tmp"
mv "$STAMP.tmp" "$STAMP"
echo "install-test-deps: done: $QEMU; arm64 Python root $ROOT (TVM $(sed -n 's/^tvm //p' "$STAMP")); aarch64-linux-gnu-gcc $(command -v aarch64-linux-gnu-gcc)"
