/*
 * LD_PRELOAD shim for Debian bookworm's linux.uml (6.1um) on hosts with AMX (Intel Sapphire
 * Rapids and later), whose XSAVE area is ~11000 bytes.
 *
 * UML saves and restores a guest thread's FPU state with
 *   ptrace(PTRACE_GETREGSET / PTRACE_SETREGSET, pid, NT_X86_XSTATE, {buf, len})
 * where len is fixed at build time (2696 bytes in this build: legacy area, header, AVX,
 * AVX-512). The host kernel accepts a short GETREGSET but rejects a SETREGSET whose length
 * is not the host's full XSAVE size with EFAULT, so on an AMX host (full size 11008) the
 * guest's first user process dies at once:
 *   "userspace - ptrace set fp regs failed, errno = 14" / "Attempted to kill init!"
 * (Hosts without AMX, e.g. with AVX-512 only, have a full size of 2696 and need nothing.)
 *
 * This shim makes those two calls work: it keeps, for each buffer address UML uses (one per
 * guest thread), the full XSAVE image from the last GETREGSET, hands UML its first len
 * bytes, and on SETREGSET overlays UML's len bytes on that full image and sets it whole.
 * Every guest thread thus keeps its own complete register state (the tail beyond UML's
 * buffer is AMX state, which guest programs cannot enable anyway). Everything else goes to
 * the real ptrace(). When the host's XSAVE area fits UML's buffer the calls pass through.
 *
 * Build: cc -shared -fPIC -O2 -o uml-xstate-shim.so uml-xstate-shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

#define PROBE_SIZE (64 * 1024)
#define SLOTS 4096

struct slot {
    void *key;  /* UML's buffer address */
    void *full; /* full XSAVE image, full_size bytes */
};

static struct slot slots[SLOTS];
static size_t full_size; /* 0 = not probed yet */

static long raw_ptrace(long req, pid_t pid, void *addr, void *data)
{
    return syscall(SYS_ptrace, req, pid, addr, data);
}

static size_t probe_full_size(pid_t pid)
{
    if (full_size)
        return full_size;
    void *buf = malloc(PROBE_SIZE);
    if (!buf)
        return 0;
    struct iovec iov = { buf, PROBE_SIZE };
    if (raw_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) == 0)
        full_size = iov.iov_len;
    free(buf);
    return full_size;
}

static struct slot *lookup(void *key, int create)
{
    size_t h = ((uintptr_t)key >> 4) * 0x9E3779B97F4A7C15ull;
    size_t start = (h >> 20) % SLOTS;
    struct slot *empty = NULL;
    for (size_t i = 0; i < SLOTS; i++) {
        struct slot *s = &slots[(start + i) % SLOTS];
        if (s->key == key)
            return s;
        if (!s->key) {
            empty = s;
            break;
        }
    }
    if (!create)
        return NULL;
    if (!empty) /* table full: reuse the home slot (its owner falls back to live state) */
        empty = &slots[start];
    if (!empty->full) {
        empty->full = malloc(full_size);
        if (!empty->full)
            return NULL;
    }
    empty->key = key;
    return empty;
}

static long xstate_get(pid_t pid, struct iovec *iov)
{
    struct slot *s = lookup(iov->iov_base, 1);
    if (!s)
        return -1;
    struct iovec big = { s->full, full_size };
    long r = raw_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &big);
    if (r < 0)
        return r;
    memcpy(iov->iov_base, s->full, iov->iov_len < big.iov_len ? iov->iov_len : big.iov_len);
    return 0;
}

static long xstate_set(pid_t pid, struct iovec *iov)
{
    struct slot *s = lookup(iov->iov_base, 0);
    void *tmp = NULL, *full;
    if (s) {
        full = s->full;
    } else {
        /* Never saved through us: start from the thread's live state. */
        tmp = malloc(full_size);
        if (!tmp)
            return -1;
        struct iovec big = { tmp, full_size };
        if (raw_ptrace(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &big) < 0) {
            free(tmp);
            return -1;
        }
        full = tmp;
    }
    memcpy(full, iov->iov_base, iov->iov_len);
    struct iovec big = { full, full_size };
    long r = raw_ptrace(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &big);
    int e = errno;
    free(tmp);
    errno = e;
    return r;
}

long ptrace(enum __ptrace_request request, ...)
{
    static long (*real)(int, ...);
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    if ((request == PTRACE_GETREGSET || request == PTRACE_SETREGSET) &&
        (uintptr_t)addr == NT_X86_XSTATE && data) {
        struct iovec *iov = data;
        size_t full = probe_full_size(pid);
        if (full && iov->iov_len < full)
            return request == PTRACE_GETREGSET ? xstate_get(pid, iov) : xstate_set(pid, iov);
    }
    if (!real)
        real = (long (*)(int, ...))dlsym(RTLD_NEXT, "ptrace");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real(request, pid, addr, data);
}
