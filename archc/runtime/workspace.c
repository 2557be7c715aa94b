/* archc's CPU workspace: where a kernel's scratch buffers come from, linked into every library with pool.c.
 *
 * TVM keeps a buffer that is not "global", or one of 1 KiB or more (a register tile of 16 vectors or more: smaller
 * ones are "global" stack buffers, generic.TILE), out of the stack, and asks the runtime for it through
 * __TVMBackendAllocWorkspace / __TVMBackendFreeWorkspace, pointers that libtvm_runtime's loader fills with its
 * WorkspacePool. archc's kernels ask once per task row: on MobileNet v2, when every tile was "local", about 1,800
 * allocations a run, each a thread-local lookup and a free-list search, and perf put 9.5% of the run in
 * libtvm_runtime (WorkspacePool::AllocWorkspace, FreeWorkspace, __tls_get_addr).
 *
 * link.py renames the kernels' references to __archc_alloc_workspace / __archc_free_workspace, defined below: a
 * per-thread arena used as a stack (TVM frees its scratch buffers in the reverse order it allocated them, scope by
 * scope). An allocation is a bump of the arena's top; a free, a pop (a free out of order is held until the buffers
 * above it are freed). What does not fit the arena (a padded input of megabytes, allocated once per kernel outside
 * its parallel loop; a 65th live buffer) and a non-CPU device's workspace (a CUDA build's host code) go to TVM's own
 * functions: this file defines the two pointers TVM's loader fills, under their own names, so the loader still
 * finds them (without them, a CPU buffer comes from posix_memalign).
 *
 *   stats   archc_workspace_served(), the allocations the calling thread's arena served (the caller of a parallel
 *           loop runs tasks too), and archc_workspace_passed_on(), those passed to TVM on any thread (tests read
 *           them through ctypes); counted per thread, so that two threads never share the counter's cache line
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))

typedef void* (*alloc_fn)(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits);
typedef int (*free_fn)(int device_type, int device_id, void* ptr);

/* Filled by TVM's module loader after dlopen (it looks these names up in the library): its WorkspacePool. */
EXPORT alloc_fn __TVMBackendAllocWorkspace = NULL;
EXPORT free_fn __TVMBackendFreeWorkspace = NULL;

HIDDEN void* archc_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits);
HIDDEN int archc_free_workspace(int device_type, int device_id, void* ptr);

/* What the kernels call through (link.py renames their references to these). */
HIDDEN alloc_fn __archc_alloc_workspace = archc_alloc_workspace;
HIDDEN free_fn __archc_free_workspace = archc_free_workspace;

#define CPU 1                          /* DLPack's kDLCPU */
#define ALIGN 64                       /* TVM's kTempAllocaAlignment: a vector's loads may assume it */
#define ARENA_BYTES (64 * 1024)        /* per thread and library: archc's largest register tile is a few KiB */
#define MAX_LIVE 64                    /* scratch buffers live at once on a thread (nested scopes) */

typedef struct {
  uint64_t served;            /* allocations served */
  uint32_t top;               /* bytes in use from the aligned base */
  int live;                   /* buffers handed out and not yet popped */
  uint32_t start[MAX_LIVE];   /* each one's offset, in allocation order */
  uint8_t freed[MAX_LIVE];    /* freed out of order: popped once the ones above it are */
  char bytes[ARENA_BYTES + ALIGN];
} arena_t;

static __thread arena_t arena; /* glibc allocates a dlopened library's TLS on a thread's first use, frees it at exit */

static uint64_t stat_passed_on; /* passed to TVM's functions (or malloc without them): rare */

static inline char* base(arena_t* a) { return (char*)(((uintptr_t)a->bytes + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1)); }

static void* pass_on(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  void* ptr = NULL;
  __atomic_add_fetch(&stat_passed_on, 1, __ATOMIC_RELAXED);
  if (__TVMBackendAllocWorkspace != NULL)
    return __TVMBackendAllocWorkspace(device_type, device_id, nbytes, dtype_code, dtype_bits);
  if (device_type != CPU) return NULL; /* no TVM runtime to ask: TVM's generated code reports the failure */
  return posix_memalign(&ptr, ALIGN, nbytes ? nbytes : 1) == 0 ? ptr : NULL;
}

void* archc_alloc_workspace(int device_type, int device_id, uint64_t nbytes, int dtype_code, int dtype_bits) {
  arena_t* a = &arena;
  uint64_t size = (nbytes + ALIGN - 1) & ~(uint64_t)(ALIGN - 1);
  if (device_type != CPU || a->live == MAX_LIVE || size > ARENA_BYTES - a->top)
    return pass_on(device_type, device_id, nbytes, dtype_code, dtype_bits);
  a->start[a->live] = a->top;
  a->freed[a->live] = 0;
  ++a->live;
  a->top += (uint32_t)size;
  ++a->served;
  return base(a) + a->start[a->live - 1];
}

int archc_free_workspace(int device_type, int device_id, void* ptr) {
  arena_t* a = &arena;
  char* b = base(a);
  int i;
  if (device_type == CPU && (char*)ptr >= b && (char*)ptr < b + ARENA_BYTES) {
    for (i = a->live - 1; i >= 0 && b + a->start[i] != (char*)ptr; --i) {}
    if (i < 0) return -1; /* not handed out: a bug in the caller, reported as TVM's pool would */
    a->freed[i] = 1;
    while (a->live > 0 && a->freed[a->live - 1]) a->top = a->start[--a->live];
    return 0;
  }
  if (__TVMBackendFreeWorkspace != NULL) return __TVMBackendFreeWorkspace(device_type, device_id, ptr);
  free(ptr);
  return 0;
}

EXPORT uint64_t archc_workspace_served(void) { return arena.served; }

EXPORT uint64_t archc_workspace_passed_on(void) { return __atomic_load_n(&stat_passed_on, __ATOMIC_RELAXED); }

#ifdef __cplusplus
}
#endif
