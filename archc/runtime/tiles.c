/* Linked into every library built with --precision bf16 (archc/lower/link.py): its convolutions run Intel AMX tile
 * instructions, which Linux allows a process only after the process asks for the tile state
 * (arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)); without that the first tile instruction kills it with
 * SIGILL. Asked once, when the library is loaded, whichever loader loads it (archc's, run_model,
 * tvm.runtime.load_module). A bf16 build is made only where the CPU has AMX-BF16, so the answer is yes. Plain C
 * that is also valid C++, like pool.c. */
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

__attribute__((constructor)) static void archc_request_tiles(void) {
  syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
}
