"""archc's CPU workspace (archc/runtime/workspace.c): the per-thread arena that archc's libraries take their
kernels' scratch buffers from, instead of TVM's WorkspacePool (link.py renames the kernels' references).

The arena alone, in a C program that includes the file (its functions are hidden): a stack of 64-byte aligned
buffers, a free out of order kept until the ones above it go, what does not fit (size, live count, another device)
passed to TVM's functions when the loader filled them and to malloc when not, an unknown pointer refused, two threads
with two arenas. Through a model: every kernel's scratch buffer of a compiled network comes from the arena, and its
outputs match onnxruntime's.
"""
from __future__ import annotations

import ctypes
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from helpers import NARROW, assert_close, onnxruntime_outputs

import archc
from archc.lower import link

ARENA = r"""
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "workspace.c"

#define CHECK(c) do { if (!(c)) { printf("line %d: %s\n", __LINE__, #c); return 1; } } while (0)
static int tvm_allocs, tvm_frees;
static char tvm_block[1 << 21] __attribute__((aligned(64)));
static void* tvm_alloc(int d, int i, uint64_t n, int c, int b) { ++tvm_allocs; return tvm_block; }
static int tvm_free(int d, int i, void* p) { ++tvm_frees; return p == tvm_block ? 0 : -1; }

static void* thread_main(void* arg) {  /* each thread fills its own buffers, then checks them */
  unsigned char* p[8];
  int i, k;
  for (i = 0; i < 8; ++i) {
    p[i] = (unsigned char*)archc_alloc_workspace(1, 0, 1000, 2, 32);
    memset(p[i], (int)(long)arg + i, 1000);
  }
  for (k = 0; k < 200000; ++k) { void* q = archc_alloc_workspace(1, 0, 448, 2, 32); archc_free_workspace(1, 0, q); }
  for (i = 7; i >= 0; --i) {
    for (k = 0; k < 1000; ++k) if (p[i][k] != (unsigned char)((int)(long)arg + i)) return (void*)1;
    archc_free_workspace(1, 0, p[i]);
  }
  return (void*)(archc_workspace_served() == 8 + 200000 ? 0 : 2);
}

int main(void) {
  char *a, *b, *c, *big, *live[MAX_LIVE + 1];
  pthread_t t[2];
  void* rc[2];
  int i;
  /* a stack of aligned, disjoint buffers; freed in reverse, the next takes the first one's place */
  a = (char*)archc_alloc_workspace(1, 0, 448, 2, 32);
  b = (char*)archc_alloc_workspace(1, 0, 1, 2, 32);
  c = (char*)archc_alloc_workspace(1, 0, 1792, 2, 32);
  CHECK(((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) % 64 == 0);
  CHECK(b >= a + 448 && c >= b + 1);
  CHECK(archc_free_workspace(1, 0, c) == 0 && archc_free_workspace(1, 0, b) == 0 && archc_free_workspace(1, 0, a) == 0);
  CHECK(archc_alloc_workspace(1, 0, 64, 2, 32) == a);
  archc_free_workspace(1, 0, a);
  /* out of order: the first freed stays reserved while the second lives */
  a = (char*)archc_alloc_workspace(1, 0, 128, 2, 32);
  b = (char*)archc_alloc_workspace(1, 0, 128, 2, 32);
  CHECK(archc_free_workspace(1, 0, a) == 0);
  c = (char*)archc_alloc_workspace(1, 0, 128, 2, 32);
  CHECK(c >= b + 128);
  CHECK(archc_free_workspace(1, 0, c) == 0 && archc_free_workspace(1, 0, b) == 0);
  CHECK(archc_alloc_workspace(1, 0, 64, 2, 32) == a);
  archc_free_workspace(1, 0, a);
  CHECK(archc_free_workspace(1, 0, a + 64) == -1);  /* never handed out */
  CHECK(archc_workspace_passed_on() == 0);
  /* too big for the arena, without TVM: malloc'd, aligned, freed */
  big = (char*)archc_alloc_workspace(1, 0, 1 << 20, 2, 32);
  CHECK(big != NULL && (uintptr_t)big % 64 == 0 && archc_workspace_passed_on() == 1);
  memset(big, 1, 1 << 20);
  CHECK(archc_free_workspace(1, 0, big) == 0);
  /* another device without TVM: nothing to give */
  CHECK(archc_alloc_workspace(2, 0, 64, 2, 32) == NULL && archc_workspace_passed_on() == 2);
  /* once TVM's loader filled its pointers, what the arena does not take goes to TVM */
  __TVMBackendAllocWorkspace = tvm_alloc;
  __TVMBackendFreeWorkspace = tvm_free;
  big = (char*)archc_alloc_workspace(1, 0, 1 << 20, 2, 32);
  CHECK(big == tvm_block && tvm_allocs == 1 && archc_free_workspace(1, 0, big) == 0 && tvm_frees == 1);
  CHECK(archc_alloc_workspace(2, 0, 64, 2, 32) == tvm_block && archc_free_workspace(2, 0, tvm_block) == 0);
  CHECK(tvm_allocs == 2 && tvm_frees == 2);
  for (i = 0; i <= MAX_LIVE; ++i) live[i] = (char*)archc_alloc_workspace(1, 0, 64, 2, 32);
  CHECK(live[MAX_LIVE] == tvm_block && tvm_allocs == 3);  /* one more than the arena keeps */
  for (i = MAX_LIVE; i >= 0; --i) CHECK(archc_free_workspace(1, 0, live[i]) == 0);
  CHECK(archc_alloc_workspace(1, 0, 64, 2, 32) == live[0]);
  archc_free_workspace(1, 0, live[0]);
  /* two threads, two arenas */
  for (i = 0; i < 2; ++i) pthread_create(&t[i], NULL, thread_main, (void*)(long)(16 * (i + 1)));
  for (i = 0; i < 2; ++i) pthread_join(t[i], &rc[i]);
  CHECK(rc[0] == 0 && rc[1] == 0);
  printf("ok\n");
  return 0;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc to build the C program: apt-get install gcc")
def test_the_arena_is_a_stack_per_thread_with_tvm_behind_it(tmp_path):
    (tmp_path / "arena.c").write_text(ARENA)
    exe = tmp_path / "arena"
    subprocess.run(["gcc", "-O2", "-pthread", "-I", str(link.WORKSPACE_SOURCE.parent), "-o", str(exe),
                    str(tmp_path / "arena.c")], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


@pytest.mark.tvm
def test_a_networks_kernels_take_their_scratch_from_the_arena(tmp_path):
    """NARROW's kernels (1×1, depthwise and 3×3 convolutions) take what scratch TVM keeps off the stack (register
    tiles of 1 KiB or more, padded copies; smaller tiles are stack buffers, generic.TILE) from the arena of the
    thread that runs them, none passed to TVM, and the outputs are onnxruntime's."""
    from archc.runtime import load_package
    spec = tmp_path / "narrow.arch"
    spec.write_text(NARROW)
    folder = Path(archc.compile(spec, target="native", output=tmp_path / "pkg", quick=0).output)
    library = folder / json.loads((folder / "manifest.json").read_text())["library"]
    nm = subprocess.run(["nm", str(library)], capture_output=True, text=True, check=True).stdout
    assert " d __archc_alloc_workspace" in nm and " d __archc_free_workspace" in nm  # the kernels' pointers
    pkg = load_package(folder)
    lib = ctypes.CDLL(str(library))  # the library the package loaded
    lib.archc_workspace_served.restype = lib.archc_workspace_passed_on.restype = ctypes.c_uint64
    before = lib.archc_workspace_served()
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = {"image": rng.standard_normal((1, 16, 14, 14)).astype("float32")}
        assert_close(pkg.run(x), onnxruntime_outputs(folder / "model.onnx", x))
    assert lib.archc_workspace_served() > before  # this thread runs tasks of every parallel loop too
    assert lib.archc_workspace_passed_on() == 0
