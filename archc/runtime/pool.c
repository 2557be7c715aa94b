/* archc's CPU parallel runtime: the thread pool that the parallel loops of an archc library run on.
 *
 * archc/lower/link.py compiles this file into every library it exports for a CPU (x86-64, aarch64), and renames the
 * library's references to TVM's pool, the weak function pointers __TVMBackendParallelLaunch and
 * __TVMBackendParallelBarrier that TVM's module loader fills after dlopen, to __archc_parallel_launch and
 * __archc_parallel_barrier, defined below. TVM's loader does not know those names and cannot overwrite them, so the
 * kernels call this pool however the library is loaded (archc's Python loader, the C++ loader run_model,
 * tvm.runtime.load_module), with no LD_PRELOAD.
 *
 * Why: TVM's stock pool splits a parallel loop statically into one task per thread and the caller waits for every
 * worker; on a loaded machine a descheduled worker stalls the kernel for a whole time slice. Here tasks are claimed
 * one at a time, dynamically, by the caller and by whichever workers are awake; the caller never waits for a
 * worker that has not claimed anything, only for tasks already claimed.
 *
 *   threads   archc_pool_set_threads(n) if the loader called it (archc's --threads, load_package's threads=),
 *             else TVM_NUM_THREADS if set, else the CPUs of the process's affinity mask; the caller is one of them,
 *             the others are workers, started on the first launch that needs them. TVM_NUM_THREADS that is not a
 *             count from 1 to MAX_THREADS (0, -1, abc, 5000) is not taken for "all": one line on stderr, then every
 *             CPU (archc's loaders refuse it before the library runs, in one sentence)
 *   tasks     num_task when the kernel asks for a number, else threads x ARCHC_TASKS_PER_THREAD (default 4): a
 *             generated lambda splits its loop by penv->num_task, so any count is correct
 *   waiting   a worker with nothing to do spins ARCHC_POOL_SPIN_US (default 300 us) with the CPU's pause
 *             instruction (yielding the CPU after the first 20 us), then sleeps on a condition variable: the next
 *             kernel of a model usually starts within that time, and a shared machine keeps the CPU after it
 *   nesting   a launch from inside a task, or from a second thread while a launch runs, runs its whole loop inline
 *             on the calling thread (num_task 1): never a deadlock
 *   errors    a task that returns non-zero makes the launch return -1 once every claimed task has finished; the
 *             first failing worker's TVM error is moved to the caller's thread, where TVM looks for it
 *   stats     ARCHC_POOL_STATS=1 prints the launches on stderr when the library is unloaded or the process exits
 *
 * Every symbol is hidden except the few archc_pool_* functions at the end (the loaders' thread setting, and for
 * tests and benchmarks), so that two archc libraries in one process each keep their own pool: a library's pointers
 * always bind to its own functions, whatever order or mode (RTLD_LOCAL or RTLD_GLOBAL) the libraries were loaded
 * in. A library unloaded with dlclose stops and joins its workers first (the destructor below), so none is left
 * running unmapped code.
 *
 * The file is plain C that is also valid C++ (TVM links libraries with g++, which compiles a .c file as C++): GCC's
 * __atomic builtins, no <stdatomic.h>. Fork safety is not a goal: in a forked child every launch runs inline.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HIDDEN __attribute__((visibility("hidden")))
#define EXPORT __attribute__((visibility("default")))

typedef struct {
  void* sync_handle;
  int32_t num_task;
} TVMParallelGroupEnv;
typedef int (*FTVMParallelLambda)(int task_id, TVMParallelGroupEnv* penv, void* cdata);

/* tvm_ffi's error hand-over (libtvm_ffi.so, loaded before any library that TVM loads); weak: absent, errors keep
   TVM's "a task failed" without the worker's message */
void TVMFFIErrorMoveFromRaised(void** result) __attribute__((weak));
void TVMFFIErrorSetRaised(void* error) __attribute__((weak));
int TVMFFIObjectDecRef(void* obj) __attribute__((weak));

HIDDEN int archc_parallel_launch(FTVMParallelLambda flambda, void* cdata, int num_task);
HIDDEN int archc_parallel_barrier(int task_id, TVMParallelGroupEnv* penv);

/* What the kernels call through (link.py renames their __TVMBackendParallel* references to these): pointers of 8
   bytes, as TVM's own are, that point at this library's pool whatever else the process has loaded. */
HIDDEN int (*__archc_parallel_launch)(FTVMParallelLambda, void*, int) = archc_parallel_launch;
HIDDEN int (*__archc_parallel_barrier)(int, TVMParallelGroupEnv*) = archc_parallel_barrier;

#define LOAD(p) __atomic_load_n((p), __ATOMIC_SEQ_CST)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_SEQ_CST)
#define ADD(p, v) __atomic_add_fetch((p), (v), __ATOMIC_SEQ_CST)
#define CAS(p, expected, desired) \
  __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

#define MAX_THREADS 1024
#define CLOSED 0xFFFFFFFFu /* the claim index of a closed generation: above any num_task */
#define CACHE_LINE 128     /* two x86 lines (adjacent-line prefetch); one line on most aarch64 cores */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  __asm__ __volatile__("yield" ::: "memory");
#else
  __asm__ __volatile__("" ::: "memory");
#endif
}

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the pool's state (one per library) -------------------------------------------------------------------- */

/* The job word: the generation (high 32 bits) and the next task index to claim (low 32 bits). A launch first
   closes the previous generation (index CLOSED, so nothing more can be claimed from it), then publishes the job,
   then opens the next generation at index 0. A worker reads the word, then the job, then claims with a CAS on the
   word it read: the CAS fails if the generation moved on meanwhile, so a late worker never runs a task with
   another launch's job (its read of a half-written job is never used). Everything is seq_cst: a few atomic
   operations per launch, and the ordering arguments stay simple. */
static uint64_t job_word __attribute__((aligned(CACHE_LINE)));
static FTVMParallelLambda job_lambda __attribute__((aligned(CACHE_LINE)));
static void* job_cdata;
static int32_t job_tasks;
static int32_t job_done __attribute__((aligned(CACHE_LINE))); /* tasks finished in this generation */
static int32_t job_failed;
static void* job_error; /* the first failing worker's error object (tvm_ffi), handed to the caller */
static int caller_waiting;

static int busy __attribute__((aligned(CACHE_LINE))); /* a launch is running (nested or concurrent ones run inline) */
static int stopping;
static int sleepers; /* workers asleep (or about to be) on wake_cv */
static pthread_mutex_t mutex = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake_cv = PTHREAD_COND_INITIALIZER; /* a new generation opened, or stopping */
static pthread_cond_t done_cv = PTHREAD_COND_INITIALIZER; /* the caller's last claimed task finished */

static pthread_once_t config_once = PTHREAD_ONCE_INIT;
static pthread_once_t workers_once = PTHREAD_ONCE_INIT;
static int n_threads = 1;        /* the caller and the workers (written under `mutex`, read atomically) */
static int threads_set;          /* archc_pool_set_threads fixed n_threads: TVM_NUM_THREADS is not read */
static int workers_started;      /* start_workers ran: n_threads is final (under `mutex`) */
static int tasks_per_thread = 4; /* tasks of a launch that does not ask for a number, per thread */
/* A CNN runs dozens of kernels back to back, a few to a few hundred µs each, with the VM's work between them:
 * a worker that went to sleep after each one costs the next a wake-up (a syscall and a scheduling delay, often
 * more than the kernel itself; measured: MobileNet v2 at 2 threads 2.4× onnxruntime's time with 10 µs of spinning,
 * 1.2× with 500 µs). So workers spin for a while, yielding the CPU after the first 20 µs. */
#define YIELD_AFTER_NS 20000u
static uint64_t spin_ns = 300000;
static int n_workers;            /* started */
static pthread_t workers[MAX_THREADS];
static pid_t owner_pid; /* the process that started the workers: a forked child has none */

static uint64_t stat_launches __attribute__((aligned(CACHE_LINE))); /* every launch */
static uint64_t stat_inline;   /* launches run inline (nested, concurrent, one thread) */
static uint64_t stat_tasks;    /* tasks of launches that went to the pool */
static uint64_t stat_worker_tasks; /* of those, the tasks workers ran */
static int barrier_warned;

static long env_long(const char* name, long lo, long hi, long fallback) {
  const char* text = getenv(name);
  char* end = NULL;
  long value;
  if (text == NULL || *text == '\0') return fallback;
  errno = 0;
  value = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || value < lo) return fallback;
  return value > hi ? hi : value;
}

/* TVM_NUM_THREADS, else every CPU: a value that is not a count from 1 to MAX_THREADS is said on stderr and is not
   taken for "all" silently (env_long would fall back without a word) */
static int default_threads(void) {
  const char* text = getenv("TVM_NUM_THREADS");
  long cpus = 0, value;
  char* end = NULL;
#ifdef CPU_COUNT
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) cpus = CPU_COUNT(&set);
#endif
  if (cpus <= 0) cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (cpus <= 0) cpus = 1;
  if (cpus > MAX_THREADS) cpus = MAX_THREADS;
  if (text == NULL || *text == '\0') return (int)cpus;
  errno = 0;
  value = strtol(text, &end, 10);
  if (errno == 0 && end != text && *end == '\0' && value >= 1 && value <= MAX_THREADS) return (int)value;
  fprintf(stderr, "archc pool: TVM_NUM_THREADS='%.40s' is not a number of threads from 1 to %d; using every CPU "
          "(%ld)\n", text, MAX_THREADS, cpus);
  return (int)cpus;
}

static void configure(void) {
  pthread_mutex_lock(&mutex);
  if (!threads_set) STORE(&n_threads, default_threads());
  pthread_mutex_unlock(&mutex);
  tasks_per_thread = (int)env_long("ARCHC_TASKS_PER_THREAD", 1, 1024, 4);
  spin_ns = (uint64_t)env_long("ARCHC_POOL_SPIN_US", 0, 1000000, 300) * 1000u;
}

/* ---- running tasks ------------------------------------------------------------------------------------------- */

static void finish_task(int failed, int32_t tasks, int on_worker) {
  if (failed) {
    STORE(&job_failed, 1);
    if (on_worker && TVMFFIErrorMoveFromRaised != NULL) {
      void* error = NULL;
      void* none = NULL;
      TVMFFIErrorMoveFromRaised(&error);
      if (error != NULL && !CAS(&job_error, &none, error) && TVMFFIObjectDecRef != NULL) TVMFFIObjectDecRef(error);
    }
  }
  if (ADD(&job_done, 1) == tasks && LOAD(&caller_waiting)) {
    pthread_mutex_lock(&mutex);
    pthread_cond_signal(&done_cv);
    pthread_mutex_unlock(&mutex);
  }
}

/* Claim and run tasks of generation `gen` until none is left (or the generation moved on). */
static void work_on(uint32_t gen) {
  for (;;) {
    uint64_t word = LOAD(&job_word);
    uint32_t index = (uint32_t)word;
    FTVMParallelLambda lambda;
    void* cdata;
    int32_t tasks;
    if ((uint32_t)(word >> 32) != gen) return;
    lambda = LOAD(&job_lambda);
    cdata = LOAD(&job_cdata);
    tasks = LOAD(&job_tasks);
    if (index >= (uint32_t)tasks) return; /* all claimed, or closed */
    if (CAS(&job_word, &word, word + 1)) { /* the word was still (gen, index): the job read is this generation's */
      TVMParallelGroupEnv env;
      env.sync_handle = NULL;
      env.num_task = tasks;
      __atomic_add_fetch(&stat_worker_tasks, 1, __ATOMIC_RELAXED);
      finish_task(lambda((int)index, &env, cdata) != 0, tasks, 1);
    }
  }
}

static void* worker_main(void* arg) {
  uint32_t seen = (uint32_t)(LOAD(&job_word) >> 32); /* the generation open when the worker started */
  (void)arg;
  work_on(seen);
  for (;;) {
    uint64_t start = 0;
    unsigned spins = 0;
    uint32_t gen;
    /* wait for the next generation: spin a little, then sleep */
    while ((gen = (uint32_t)(LOAD(&job_word) >> 32)) == seen && !LOAD(&stopping)) {
      cpu_relax();
      if ((++spins & 63) == 0) {
        uint64_t t = now_ns();
        if (start == 0) start = t;
        else if (t - start >= spin_ns) break;
        else if (t - start >= YIELD_AFTER_NS) sched_yield(); /* still waiting: let another thread of this CPU run */
      }
      if (spin_ns == 0) break;
    }
    if (gen == seen && !LOAD(&stopping)) {
      pthread_mutex_lock(&mutex);
      ADD(&sleepers, 1); /* before reading the word again: a launch that opens after this read sees a sleeper */
      while ((gen = (uint32_t)(LOAD(&job_word) >> 32)) == seen && !LOAD(&stopping))
        pthread_cond_wait(&wake_cv, &mutex);
      ADD(&sleepers, -1);
      pthread_mutex_unlock(&mutex);
    }
    if (LOAD(&stopping)) return NULL;
    seen = gen;
    work_on(gen);
  }
}

static void start_workers(void) {
  sigset_t all, old;
  pthread_attr_t attr;
  int i, threads;
  pthread_mutex_lock(&mutex);
  STORE(&workers_started, 1); /* from here archc_pool_set_threads cannot change the count */
  threads = LOAD(&n_threads);
  pthread_mutex_unlock(&mutex);
  owner_pid = getpid();
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* signals go to the application's threads, never to a worker */
  pthread_attr_init(&attr);
  for (i = 0; i < threads - 1; ++i) {
    if (pthread_create(&workers[n_workers], &attr, worker_main, NULL) != 0) break;
#ifdef __GLIBC__
    pthread_setname_np(workers[n_workers], "archc-pool");
#endif
    ++n_workers;
  }
  pthread_attr_destroy(&attr);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* At dlclose or exit: ARCHC_POOL_STATS=1 prints what the pool did (how tests see that run_model used it); the
   workers are stopped and joined, so that none runs code of an unmapped library. */
__attribute__((destructor)) static void stop_workers(void) {
  int i;
  const char* stats = getenv("ARCHC_POOL_STATS");
  if (stats != NULL && *stats != '\0' && strcmp(stats, "0") != 0)
    fprintf(stderr, "archc pool: %llu launches (%llu inline), %llu tasks (%llu by workers), %d threads, %d workers "
            "started\n", (unsigned long long)LOAD(&stat_launches), (unsigned long long)LOAD(&stat_inline),
            (unsigned long long)LOAD(&stat_tasks), (unsigned long long)LOAD(&stat_worker_tasks), LOAD(&n_threads),
            n_workers);
  if (n_workers == 0 || getpid() != owner_pid) return;
  pthread_mutex_lock(&mutex);
  STORE(&stopping, 1);
  pthread_cond_broadcast(&wake_cv);
  pthread_mutex_unlock(&mutex);
  for (i = 0; i < n_workers; ++i) pthread_join(workers[i], NULL);
  n_workers = 0;
}

static int run_inline(FTVMParallelLambda flambda, void* cdata, int tasks) {
  TVMParallelGroupEnv env;
  int i, failed = 0;
  env.sync_handle = NULL;
  env.num_task = tasks;
  for (i = 0; i < tasks; ++i) failed |= flambda(i, &env, cdata) != 0;
  return failed ? -1 : 0;
}

/* ---- TVM's backend API ----------------------------------------------------------------------------------------- */

int archc_parallel_launch(FTVMParallelLambda flambda, void* cdata, int num_task) {
  int tasks, expected = 0, own_failed = 0;
  uint64_t word, start = 0;
  uint32_t gen;
  unsigned spins = 0;
  TVMParallelGroupEnv env;
  int threads;
  pthread_once(&config_once, configure);
  ADD(&stat_launches, 1);
  threads = LOAD(&n_threads); /* before the workers start, a concurrent archc_pool_set_threads may change it: any
                                 task count is correct, and start_workers reads it again */
  tasks = num_task > 0 ? num_task : threads * tasks_per_thread;
  if (threads == 1 || tasks == 1) {
    ADD(&stat_inline, 1);
    return run_inline(flambda, cdata, num_task > 0 ? num_task : 1);
  }
  if (!CAS(&busy, &expected, 1)) { /* nested in a task, or another thread's launch is running */
    ADD(&stat_inline, 1);
    return run_inline(flambda, cdata, 1);
  }
  pthread_once(&workers_once, start_workers);
  if (n_workers == 0 || getpid() != owner_pid) { /* no thread could be started, or a forked child */
    STORE(&busy, 0);
    ADD(&stat_inline, 1);
    return run_inline(flambda, cdata, num_task > 0 ? num_task : 1);
  }

  /* close the previous generation, publish the job, open the next generation */
  word = LOAD(&job_word);
  gen = (uint32_t)(word >> 32);
  STORE(&job_word, ((uint64_t)gen << 32) | CLOSED);
  STORE(&job_done, 0);
  STORE(&job_failed, 0);
  STORE(&job_error, (void*)NULL);
  STORE(&job_lambda, flambda);
  STORE(&job_cdata, cdata);
  STORE(&job_tasks, (int32_t)tasks);
  STORE(&job_word, (uint64_t)(gen + 1) << 32);
  __atomic_add_fetch(&stat_tasks, (uint64_t)tasks, __ATOMIC_RELAXED);
  if (LOAD(&sleepers) > 0) {
    pthread_mutex_lock(&mutex);
    if (tasks - 1 >= n_workers) pthread_cond_broadcast(&wake_cv);
    else for (int i = 0; i < tasks - 1; ++i) pthread_cond_signal(&wake_cv);
    pthread_mutex_unlock(&mutex);
  }

  /* the caller claims tasks too (no other launch can touch the word while it holds `busy`) */
  env.sync_handle = NULL;
  env.num_task = tasks;
  for (;;) {
    uint32_t index = (uint32_t)__atomic_fetch_add(&job_word, 1, __ATOMIC_SEQ_CST);
    int failed;
    if (index >= (uint32_t)tasks) break;
    failed = flambda((int)index, &env, cdata) != 0;
    own_failed |= failed;
    finish_task(failed, tasks, 0);
  }

  /* wait for the tasks that workers claimed: spin a little, then sleep until the last one signals */
  while (LOAD(&job_done) < tasks) {
    cpu_relax();
    if ((++spins & 63) == 0) {
      uint64_t t = now_ns();
      if (start == 0) start = t;
      else if (t - start >= spin_ns) break;
    }
  }
  if (LOAD(&job_done) < tasks) {
    pthread_mutex_lock(&mutex);
    STORE(&caller_waiting, 1); /* before reading job_done again: the finishing worker sees it and signals */
    while (LOAD(&job_done) < tasks) pthread_cond_wait(&done_cv, &mutex);
    STORE(&caller_waiting, 0);
    pthread_mutex_unlock(&mutex);
  }

  {
    int failed = LOAD(&job_failed);
    void* error = LOAD(&job_error);
    if (error != NULL) {
      /* a task of the caller's own failed: its error is already where TVM looks; else the worker's goes there */
      if (!own_failed && TVMFFIErrorSetRaised != NULL) TVMFFIErrorSetRaised(error); /* takes its own reference */
      if (TVMFFIObjectDecRef != NULL) TVMFFIObjectDecRef(error);
    }
    STORE(&busy, 0);
    return failed ? -1 : 0;
  }
}

/* TVM's barrier makes every task of a launch wait until all have reached it: it is only correct when all num_task
   tasks run at once, which a pool that claims tasks dynamically (more tasks than threads, workers that may be
   asleep) cannot promise. Rather than deadlock or return early, it fails: -1 (the kernel reports an error) and one
   line on stderr. TVM emits it only for TIR that asks for it explicitly; no schedule archc builds does. */
int archc_parallel_barrier(int task_id, TVMParallelGroupEnv* penv) {
  int expected = 0;
  (void)task_id;
  (void)penv;
  if (CAS(&barrier_warned, &expected, 1))
    fputs("archc pool: TVMBackendParallelBarrier is not supported\n", stderr);
  return -1;
}

/* ---- for the loaders, tests and benchmarks (default visibility: ctypes and dlsym find them) ------------------ */

EXPORT int archc_pool_launch(FTVMParallelLambda flambda, void* cdata, int num_task) {
  return archc_parallel_launch(flambda, cdata, num_task);
}

EXPORT int archc_pool_barrier(int task_id, TVMParallelGroupEnv* penv) { return archc_parallel_barrier(task_id, penv); }

EXPORT uint64_t archc_pool_launches(void) { return LOAD(&stat_launches); }

EXPORT uint64_t archc_pool_inline_launches(void) { return LOAD(&stat_inline); }

EXPORT uint64_t archc_pool_tasks(void) { return LOAD(&stat_tasks); }

EXPORT uint64_t archc_pool_worker_tasks(void) { return LOAD(&stat_worker_tasks); }

EXPORT int archc_pool_threads(void) {
  pthread_once(&config_once, configure);
  return LOAD(&n_threads);
}

/* The loaders' thread setting (archc's --threads, load_package's threads=, run_model --threads): the pool's thread
   count, the caller included, instead of TVM_NUM_THREADS or every CPU. 0 when set; -1 for a count outside 1 to
   MAX_THREADS; -2 once the workers have started with another count (the library already ran a parallel loop in
   this process: set it before the first run, or load a copy of the library, which has a pool of its own). Any
   count works before then, also after runs that stayed on one thread. */
EXPORT int archc_pool_set_threads(int threads) {
  int rc = 0;
  if (threads < 1 || threads > MAX_THREADS) return -1;
  pthread_mutex_lock(&mutex);
  if (LOAD(&workers_started)) {
    rc = threads == LOAD(&n_threads) ? 0 : -2;
  } else {
    STORE(&threads_set, 1);
    STORE(&n_threads, threads);
  }
  pthread_mutex_unlock(&mutex);
  return rc;
}

EXPORT int archc_pool_workers(void) { return n_workers; }

#ifdef __cplusplus
}
#endif
