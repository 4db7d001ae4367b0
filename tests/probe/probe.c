/* The adversarial suite's in-sandbox probe (tests/adversarial.rs).
 *
 * Built static by the tests (gcc -static -O2 -pthread) and shipped in the
 * code directory of a python function (tests/probe/app.py), which runs it.
 *
 *   probe syscalls   one line per attempt: "<name> <outcome>", where the
 *                    outcome is "ok", an errno name (EPERM, ENOSYS, EBADF,
 *                    EFAULT...) or "signal <n>" for attempts run in a
 *                    forked child (never-legitimate syscalls, i386 ABI).
 *                    Arguments are bad fds and pointers wherever the call
 *                    takes them, so an allowed call shows as EBADF/EFAULT
 *                    and has no side effect.
 *   probe kill NAME  ignore SIGSYS, then make the never-legitimate syscall
 *                    NAME (bpf, perf_event_open, userfaultfd) in this
 *                    process; run by exec in place of the runtime.
 *   probe spin N     ignore SIGTERM and spin in N threads forever.
 *   probe forkbomb   fork until refused, every child trying again forever;
 *                    prints "<errno> <children>" once refused and exits,
 *                    leaving the children behind.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif

#define BAD_PTR ((long)8) /* in the zero page: never mapped */
#define BAD_FD (-1L)

static const char *errname(int e) {
  switch (e) {
  case EPERM: return "EPERM";
  case ENOENT: return "ENOENT";
  case ESRCH: return "ESRCH";
  case EINTR: return "EINTR";
  case EBADF: return "EBADF";
  case EAGAIN: return "EAGAIN";
  case ENOMEM: return "ENOMEM";
  case EACCES: return "EACCES";
  case EFAULT: return "EFAULT";
  case EBUSY: return "EBUSY";
  case EEXIST: return "EEXIST";
  case ENOTDIR: return "ENOTDIR";
  case EINVAL: return "EINVAL";
  case ENOSPC: return "ENOSPC";
  case EROFS: return "EROFS";
  case ENOSYS: return "ENOSYS";
  case EAFNOSUPPORT: return "EAFNOSUPPORT";
  case EPROTONOSUPPORT: return "EPROTONOSUPPORT";
  case ESOCKTNOSUPPORT: return "ESOCKTNOSUPPORT";
  case ENETUNREACH: return "ENETUNREACH";
  case ECONNREFUSED: return "ECONNREFUSED";
  case EOPNOTSUPP: return "EOPNOTSUPP";
  default: return "E?";
  }
}

static void report(const char *name, long ret) {
  if (ret >= 0)
    printf("%s ok\n", name);
  else
    printf("%s %s\n", name, errname(errno));
  fflush(stdout);
}

#define TRY(name, ...) report(name, syscall(__VA_ARGS__))

/* Socket probes close what they open, so "ok" leaves nothing behind. */
static void try_socket(const char *name, long family, long type, long proto) {
  long fd = syscall(SYS_socket, family, type, proto);
  report(name, fd);
  if (fd >= 0)
    close((int)fd);
}

static void try_connect(const char *name, const char *ip, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, ip, &addr.sin_addr);
  report(name, fd < 0 ? fd : connect(fd, (struct sockaddr *)&addr, sizeof addr));
  if (fd >= 0)
    close(fd);
}

/* Runs `nr` in a forked child that ignores SIGSYS; reports how it ended. */
static void try_in_child(const char *name, long nr) {
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSYS, SIG_IGN);
    long ret = syscall(nr, BAD_FD, BAD_PTR, BAD_PTR, 0, 0, 0);
    _exit(ret < 0 ? 100 : 101);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    printf("%s signal %d\n", name, WTERMSIG(status));
  else
    printf("%s exit %d\n", name, WEXITSTATUS(status));
  fflush(stdout);
}

#if defined(__x86_64__)
/* getpid through the i386 ABI (int 0x80, i386 number 20). */
static void try_i386(void) {
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSYS, SIG_IGN);
    long ret;
    __asm__ volatile("int $0x80" : "=a"(ret) : "a"(20L) : "memory");
    _exit(ret > 0 ? 101 : 100);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (WIFSIGNALED(status))
    printf("i386_getpid signal %d\n", WTERMSIG(status));
  else
    printf("i386_getpid exit %d\n", WEXITSTATUS(status));
  fflush(stdout);
}
#endif

static void syscalls(void) {
  /* 4: namespaces and mounts. */
  TRY("unshare_user", SYS_unshare, (long)CLONE_NEWUSER);
  TRY("unshare_mount", SYS_unshare, (long)CLONE_NEWNS);
  TRY("unshare_net", SYS_unshare, (long)CLONE_NEWNET);
  TRY("clone_newuser", SYS_clone, (long)(CLONE_NEWUSER | SIGCHLD), 0L, BAD_PTR, BAD_PTR, 0L);
  TRY("clone_newpid_high_bits", SYS_clone, (long)((1UL << 32) | CLONE_NEWPID | SIGCHLD), 0L, BAD_PTR, BAD_PTR, 0L);
  TRY("clone3", SYS_clone3, BAD_PTR, 88L);
  TRY("mount", SYS_mount, BAD_PTR, BAD_PTR, BAD_PTR, 0L, BAD_PTR);
  TRY("umount2", SYS_umount2, BAD_PTR, 0L);
  TRY("fsopen", SYS_fsopen, BAD_PTR, 0L);
  TRY("fsconfig", SYS_fsconfig, BAD_FD, 0L, BAD_PTR, BAD_PTR, 0L);
  TRY("fsmount", SYS_fsmount, BAD_FD, 0L, 0L);
  TRY("fspick", SYS_fspick, BAD_FD, BAD_PTR, 0L);
  TRY("open_tree", SYS_open_tree, BAD_FD, BAD_PTR, 0L);
  TRY("move_mount", SYS_move_mount, BAD_FD, BAD_PTR, BAD_FD, BAD_PTR, 0L);
  TRY("mount_setattr", SYS_mount_setattr, BAD_FD, BAD_PTR, 0L, BAD_PTR, 0L);
  /* 5 */
  TRY("pivot_root", SYS_pivot_root, BAD_PTR, BAD_PTR);
  TRY("chroot", SYS_chroot, BAD_PTR);
  TRY("setns", SYS_setns, BAD_FD, 0L);
  TRY("sethostname", SYS_sethostname, BAD_PTR, 4L);
  TRY("setdomainname", SYS_setdomainname, BAD_PTR, 4L);
  /* 3: identity changes */
  TRY("setuid", SYS_setuid, 0L);
  TRY("setresuid", SYS_setresuid, 0L, 0L, 0L);
  TRY("capset", SYS_capset, BAD_PTR, BAD_PTR);
  /* 8 */
  TRY("mknod", SYS_mknod, BAD_PTR, (long)(S_IFCHR | 0600), 0x0101L);
  TRY("mknodat", SYS_mknodat, BAD_FD, BAD_PTR, (long)(S_IFCHR | 0600), 0x0101L);
  /* 9 */
  TRY("ptrace_attach", SYS_ptrace, 16L /* PTRACE_ATTACH */, 1L, 0L, 0L);
  TRY("ptrace_traceme", SYS_ptrace, 0L /* PTRACE_TRACEME */, 0L, 0L, 0L);
  TRY("process_vm_readv", SYS_process_vm_readv, 1L, BAD_PTR, 1L, BAD_PTR, 1L, 0L);
  TRY("process_vm_writev", SYS_process_vm_writev, 1L, BAD_PTR, 1L, BAD_PTR, 1L, 0L);
  TRY("pidfd_getfd", SYS_pidfd_getfd, BAD_FD, 0L, 0L);
  TRY("kcmp", SYS_kcmp, 1L, 1L, 0L, 0L, 0L);
  TRY("keyctl", SYS_keyctl, 0L, 0L, 0L, 0L, 0L);
  TRY("add_key", SYS_add_key, BAD_PTR, BAD_PTR, BAD_PTR, 0L, 0L);
  TRY("request_key", SYS_request_key, BAD_PTR, BAD_PTR, BAD_PTR, 0L);
  /* Host-wide state. */
  TRY("reboot", SYS_reboot, 0L, 0L, 0L, BAD_PTR);
  TRY("swapon", SYS_swapon, BAD_PTR, 0L);
  TRY("swapoff", SYS_swapoff, BAD_PTR);
  TRY("acct", SYS_acct, BAD_PTR);
  TRY("settimeofday", SYS_settimeofday, BAD_PTR, BAD_PTR);
  TRY("clock_settime", SYS_clock_settime, 0L, BAD_PTR);
  TRY("syslog", SYS_syslog, 3L /* READ_ALL */, BAD_PTR, 16L);
  TRY("prlimit_raise", SYS_prlimit64, 0L, 7L /* NOFILE */, BAD_PTR, 0L);
  /* 11 */
  TRY("personality_query", SYS_personality, 0xffffffffL);
  TRY("personality_no_aslr", SYS_personality, (long)ADDR_NO_RANDOMIZE);
  TRY("personality_read_implies_exec", SYS_personality, (long)READ_IMPLIES_EXEC);
  TRY("personality_high_bits", SYS_personality, (long)((1UL << 32) | ADDR_NO_RANDOMIZE));
  /* 12 */
  TRY("io_uring_setup", SYS_io_uring_setup, 1L, BAD_PTR);
  TRY("io_uring_enter", SYS_io_uring_enter, BAD_FD, 0L, 0L, 0L, 0L, 0L);
  TRY("io_uring_register", SYS_io_uring_register, BAD_FD, 0L, 0L, 0L);
  /* 13 */
  try_socket("socket_alg", AF_ALG, SOCK_SEQPACKET, 0);
  try_socket("socket_vsock", AF_VSOCK, SOCK_STREAM, 0);
  try_socket("socket_packet", AF_PACKET, SOCK_RAW, 0);
  try_socket("socket_packet_high_bits", (1L << 32) | AF_PACKET, SOCK_RAW, 0);
  try_socket("socket_inet_raw", AF_INET, SOCK_RAW, IPPROTO_ICMP);
  try_socket("socket_inet_raw_cloexec", AF_INET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_RAW);
  try_socket("socket_inet6_raw", AF_INET6, SOCK_RAW, IPPROTO_ICMPV6);
  try_socket("socket_inet_packet", AF_INET, SOCK_PACKET, 0);
  try_socket("socket_inet_ping", AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  try_socket("socket_netlink_audit", AF_NETLINK, SOCK_RAW, 9 /* NETLINK_AUDIT */);
  try_socket("socket_inet_tcp", AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  try_socket("socket_inet6_udp", AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, IPPROTO_UDP);
  try_socket("socket_unix", AF_UNIX, SOCK_STREAM, 0);
  try_connect("connect_documentation_net", "192.0.2.1", 80);
  try_connect("connect_private_net", "10.0.0.1", 80);
  try_connect("connect_loopback_closed", "127.0.0.1", 9);
  /* Non-native ABIs. */
  TRY("x32_getpid", 0x40000000L | SYS_getpid);
#if defined(__x86_64__)
  try_i386();
#endif
  /* 10: never legitimate, killed even with SIGSYS ignored. */
  try_in_child("bpf", SYS_bpf);
  try_in_child("perf_event_open", SYS_perf_event_open);
  try_in_child("userfaultfd", SYS_userfaultfd);
  try_in_child("kexec_load", SYS_kexec_load);
  try_in_child("kexec_file_load", SYS_kexec_file_load);
  try_in_child("init_module", SYS_init_module);
  try_in_child("finit_module", SYS_finit_module);
  try_in_child("delete_module", SYS_delete_module);
  /* Allowed calls with bad arguments: the filter lets them reach the kernel. */
  TRY("ioctl_tcgets_bad_fd", SYS_ioctl, BAD_FD, 0x5401L, BAD_PTR);
  TRY("ioctl_tiocsti", SYS_ioctl, 0L, 0x5412L, BAD_PTR);
  TRY("ioctl_tiocsti_high_bits", SYS_ioctl, 0L, (long)((1UL << 32) | 0x5412UL), BAD_PTR);
  TRY("read_bad_fd", SYS_read, BAD_FD, BAD_PTR, 1L);
  TRY("write_bad_pointer", SYS_write, 1L, BAD_PTR, 1L);
}

static void *spin(void *arg) {
  (void)arg;
  for (volatile unsigned long i = 0;; i++)
    ;
  return NULL;
}

static int forkbomb(void) {
  long forked = 0;
  for (;;) {
    pid_t pid = fork();
    if (pid < 0) {
      printf("%s %ld\n", errname(errno), forked);
      return 0;
    }
    if (pid == 0) {
      close(1); /* the caller reads stdout and stderr to their end */
      close(2);
      for (;;)
        if (fork() < 0)
          usleep(50000);
    }
    forked++;
  }
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "forkbomb") == 0)
    return forkbomb();
  if (argc >= 2 && strcmp(argv[1], "syscalls") == 0) {
    syscalls();
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "kill") == 0) {
    long nr = strcmp(argv[2], "bpf") == 0               ? SYS_bpf
              : strcmp(argv[2], "perf_event_open") == 0 ? SYS_perf_event_open
              : strcmp(argv[2], "userfaultfd") == 0     ? SYS_userfaultfd
                                                        : -1;
    if (nr < 0)
      return 2;
    signal(SIGSYS, SIG_IGN);
    syscall(nr, BAD_FD, BAD_PTR, BAD_PTR, 0L, 0L, 0L);
    return 3; /* not reached: the filter kills the process */
  }
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) {
    signal(SIGTERM, SIG_IGN);
    int n = atoi(argv[2]);
    for (int i = 1; i < n; i++) {
      pthread_t t;
      pthread_create(&t, NULL, spin, NULL);
    }
    spin(NULL);
  }
  fprintf(stderr, "usage: probe syscalls | kill bpf|perf_event_open|userfaultfd | spin N\n");
  return 2;
}
