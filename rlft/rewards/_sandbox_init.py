"""The sandbox's init: runs *inside* the namespaces, before any untrusted code, and starts it.

Not imported by rlft: ``sandbox.py`` passes this file's text to ``python -I -S -c`` with one JSON
argument (the config below), under ``bwrap`` or ``unshare``. It uses only the standard library.

1. ``mounts`` (unshare backend only; bwrap builds the tree itself): a fresh tmpfs root holding
   read-only binds of the system and Python folders, a minimal /dev, a new /proc, and the throwaway
   folder at /sandbox (the only writable place); pivot_root into it, detach the old root, then make
   the new root read-only.
2. Privileges: with ``uid`` set (rlft runs as root: no user namespace, so the sandbox needs a uid of
   its own for RLIMIT_NPROC to apply — the kernel exempts uid 0), switch to it, which clears every
   capability. Otherwise (inside a user namespace) set that namespace's max_user_namespaces to 0
   (no nested user namespaces), then empty the capability bounding set and the
   inheritable/permitted sets, so an exec'd program cannot regain them. Always no_new_privs and
   non-dumpable (the program cannot ptrace this process).
3. Fork the program with the rlimits set in the child, the working directory /sandbox, only the
   given environment and only fds 0-2 plus ``keep_fds``; the child writes ``{"started": true}``
   to ``status_fd`` and closes it just before exec (the program never holds it), so rlft can tell
   a program that killed this init (possible under bwrap) from a sandbox that failed to start.
   Close ``keep_fds`` here (they are the program's alone). Wait for it and write one JSON line
   to ``status_fd``: its exit code or signal and CPU seconds.
4. Exit. This process is PID 1 of the PID namespace (unshare) or the only child of bwrap's PID 1,
   so its exit kills every process the program left behind. An alarm after ``wall_s`` kills the
   program even if rlft itself died meanwhile. The first status line names the PID namespace, so
   rlft can check afterwards that nothing of it is left.
"""

import ctypes
import json
import os
import platform
import resource
import signal
import sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
SYS_CAPSET = {"x86_64": 126, "aarch64": 91, "riscv64": 91, "ppc64le": 184, "s390x": 185}
# statvfs flag -> mount flag; a remount inside a user namespace must keep the locked ones.
KEEP_FLAGS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
              os.ST_NOATIME: MS_NOATIME, os.ST_NODIRATIME: MS_NODIRATIME, os.ST_RELATIME: MS_RELATIME}
RLIMITS = {"cpu": resource.RLIMIT_CPU, "as": resource.RLIMIT_AS, "nproc": resource.RLIMIT_NPROC,
           "fsize": resource.RLIMIT_FSIZE, "core": resource.RLIMIT_CORE, "nofile": resource.RLIMIT_NOFILE}

libc = ctypes.CDLL(None, use_errno=True)


def check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"sandbox init: {what}: {os.strerror(err)}")


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    check(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
          f"mount {src} on {target}")


def bind(src, target, writable):
    if os.path.isdir(src):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, "a").close()
    mount(src, target, None, MS_BIND)  # not MS_REC: submounts of src stay out of the sandbox
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | (0 if writable else MS_RDONLY)
    have = os.statvfs(target).f_flag
    flags |= sum(ms for st, ms in KEEP_FLAGS.items() if have & st)
    mount(None, target, None, flags)


def build_root(m):
    """Mount the sandbox's file tree on m['root'] and pivot into it."""
    new = m["root"]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for src in m["ro"]:
        bind(src, new + src, writable=False)
    for link, target in m["symlinks"].items():
        os.symlink(target, new + link)
    os.makedirs(new + "/dev")
    mount("tmpfs", new + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for dev in ("null", "zero", "full", "random", "urandom"):
        bind("/dev/" + dev, new + "/dev/" + dev, writable=True)
    for i, name in enumerate(("stdin", "stdout", "stderr")):
        os.symlink(f"/proc/self/fd/{i}", f"{new}/dev/{name}")
    os.symlink("/proc/self/fd", new + "/dev/fd")
    os.makedirs(new + "/proc")
    mount("proc", new + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    bind(m["work"], new + m["cwd"], writable=True)
    os.makedirs(new + "/.old")
    check(libc.syscall(SYS_PIVOT_ROOT[platform.machine()], new.encode(), (new + "/.old").encode()), "pivot_root")
    os.chdir("/")
    check(libc.umount2(b"/.old", MNT_DETACH), "umount old root")
    os.rmdir("/.old")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_privileges(uid):
    if uid is not None:  # real root, no user namespace: become an unprivileged uid of our own
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # clears the effective and permitted capability sets
    else:  # root of a user namespace: give up every capability for good
        try:  # first: no user namespaces below this one (the limit is this namespace's own)
            with open("/proc/sys/user/max_user_namespaces", "w") as f:
                f.write("0")
        except OSError:
            pass  # bwrap --disable-userns did it already (read-only), or the kernel has no such knob
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
        for cap in range(last + 1):
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM without CAP_SETPCAP: nothing to drop
        header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
        data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable = 0 (two words each)
        check(libc.syscall(SYS_CAPSET[platform.machine()], header, data), "capset")
    check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    check(libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), "dumpable")


def start_program(cfg):
    """fork + exec the program with its limits; returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.chdir(cfg["cwd"])
        for name, (soft, hard) in cfg["rlimits"].items():
            resource.setrlimit(RLIMITS[name], (soft, hard))
        keep = sorted({0, 1, 2, cfg["status_fd"], *cfg["keep_fds"]})  # status_fd: closed below
        for lo, hi in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
            os.closerange(lo + 1, hi)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        # Setup is done and nothing of the program has run yet: from here on, an init that dies
        # without a report was killed by the program (bwrap: it is not PID 1, so it can be).
        os.write(cfg["status_fd"], b'{"started": true}\n')
        os.close(cfg["status_fd"])
        os.execvpe(cfg["argv"][0], cfg["argv"], cfg["env"])
    except BaseException as e:
        os.write(2, f"sandbox: cannot start {cfg['argv'][0]!r}: {e}\n".encode())
    os._exit(127)


def main():
    cfg = json.loads(sys.argv[1])
    status = cfg["status_fd"]
    # rlft sweeps this PID namespace at the end (belt and braces: its death should take them all)
    os.write(status, (json.dumps({"pidns": os.readlink("/proc/self/ns/pid")}) + "\n").encode())
    try:
        if cfg["mounts"]:
            build_root(cfg["mounts"])
        if not cfg["unsandboxed"]:
            drop_privileges(cfg["uid"])
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # a uid change cleared it
    except OSError as e:
        os.write(status, (json.dumps({"setup_error": str(e)}) + "\n").encode())
        os._exit(126)
    pid = start_program(cfg)
    for fd in cfg["keep_fds"]:  # the program's (the verdict channel): not held here for it to find
        os.close(fd)

    def on_alarm(signum, frame):  # rlft's own deadline failed (rlft died?): stop regardless
        os.kill(pid, signal.SIGKILL)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(int(cfg["wall_s"]) + 2)
    _, wstatus, usage = os.wait4(pid, 0)
    cpu_s = usage.ru_utime + usage.ru_stime
    if os.WIFSIGNALED(wstatus):
        report = {"signal": os.WTERMSIG(wstatus), "cpu_s": cpu_s}
    else:
        report = {"exit": os.WEXITSTATUS(wstatus), "cpu_s": cpu_s}
    os.write(status, (json.dumps(report) + "\n").encode())
    os._exit(0)


main()
