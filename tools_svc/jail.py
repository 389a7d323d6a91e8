"""The sandbox's jail: run as a script by `tools_svc.sandbox`, never imported by it.

    python -I -S -B tools_svc/jail.py '<config JSON>'   (the snippet on stdin)

It runs under the service's own interpreter with nothing but the standard
library, because it executes outside any sandbox and must not import the
service's code or dependencies. Three processes take part:

    outer (this script)          new mount, network, IPC, UTS, PID namespaces;
    │                            in user mode also a new user namespace
    └── init (PID 1 of the new PID namespace): builds a root of its own and
        │  pivots into it, then reaps and reports the snippet's exit status
        └── snippet: rlimits, unprivileged uid, no_new_privs, `execve` python

What the snippet sees is a fresh root: `/usr`, the interpreter's prefix, a
few `/etc` files (all read-only), `/dev/{null,zero,random,urandom,full}`, its
own `/proc`, and `/work` (also `/tmp`), a size-capped tmpfs that vanishes with
the namespace. Nothing else of the host's file system (the service's code,
data, `/root`, `/home`, the host's `/tmp`) exists there. Its network
namespace holds only its own loopback interface. When init exits (the snippet
ended, or the outer process was killed), the kernel kills everything left in
the PID namespace, so no child outlives the run.

Setup failures are reported as one JSON line `{"setup_error": ...}` on the
status pipe (exit status 125); the snippet's end as `{"exit_code": n}` or
`{"signal": n}`.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import platform
import resource
import signal
import socket
import struct
import sys
from typing import Any, NoReturn

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

# pivot_root has no libc wrapper; where its number is unknown we fall back to chroot.
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(platform.machine())

SETUP_FAILED = 125
# Where the new root is assembled; it is shadowed only inside our own mount namespace.
STAGING = "/tmp"
DEVICES = ("null", "zero", "full", "random", "urandom")
ETC_FILES = ("ld.so.cache", "localtime", "passwd", "group", "nsswitch.conf", "hosts")
SNIPPET = "/work/main.py"

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A step of building the sandbox failed; the message says which."""


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise SetupError(f"{what} failed: {os.strerror(code)} ({errno.errorcode.get(code, code)})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def _prctl(option: int, value: int) -> None:
    _check(_libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0), f"prctl({option})")


def _report(status_fd: int, payload: dict[str, Any]) -> None:
    # If the service went away, nobody is left to tell.
    with contextlib.suppress(OSError):
        os.write(status_fd, (json.dumps(payload) + "\n").encode())


def _fail(status_fd: int, message: str) -> NoReturn:
    _report(status_fd, {"setup_error": message})
    os._exit(SETUP_FAILED)


# --- namespaces -------------------------------------------------------------


def enter_namespaces(user_mode: bool) -> None:
    """Unshare every namespace but the PID one's first member (our child).

    As root we hold the capabilities already; otherwise a user namespace
    grants them inside it, with our own uid and gid mapped to themselves.
    """
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    uid, gid = os.getuid(), os.getgid()
    if user_mode:
        flags |= CLONE_NEWUSER
    _check(_libc.unshare(flags), "unshare(mount, network, PID, IPC, UTS namespaces)")
    if user_mode:
        for name, text in (("setgroups", "deny"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"{uid} {uid} 1")


def loopback_up() -> None:
    """Bring up `lo` of the new network namespace (it starts down, with no address)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sh22x", b"lo", flags | iff_up))


# --- the new root -----------------------------------------------------------


def _locked_flags(path: str) -> int:
    # In a user namespace a bind mount may not drop the source's nosuid/noexec/atime
    # flags, so a read-only remount must repeat them.
    vfs = os.statvfs(path).f_flag
    flags = 0
    for st_flag, ms_flag in (
        (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_NOATIME, MS_NOATIME),
        (os.ST_NODIRATIME, MS_NODIRATIME),
        (os.ST_RELATIME, MS_RELATIME),
    ):
        if vfs & st_flag:
            flags |= ms_flag
    return flags


def _make_target(source: str, target: str) -> None:
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        if not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def bind(source: str, root: str, *, read_only: bool = True) -> None:
    target = root + source
    _make_target(source, target)
    _mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        flags = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV
        _mount(None, target, None, flags | _locked_flags(source))


def read_only_paths(prefix: str) -> list[str]:
    """Host paths the snippet may read: the OS's libraries and the interpreter."""
    paths = ["/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.isdir(top) and not os.path.islink(top):
            paths.append(top)
    if not os.path.realpath(prefix).startswith("/usr/"):
        paths.append(os.path.realpath(prefix))
    paths += [f"/etc/{name}" for name in ETC_FILES if os.path.isfile(f"/etc/{name}")]
    return paths


def build_root(root: str, config: dict[str, Any], uid: int, gid: int) -> None:
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,nr_inodes=4096,mode=0755")
    for path in read_only_paths(sys.base_prefix):
        bind(path, root)
    # Merged-/usr systems have /bin -> usr/bin and so on: recreate the links.
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), root + top)
    os.makedirs(root + "/dev", mode=0o755)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            bind(f"/dev/{name}", root, read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/1", f"{root}/dev/stdout")
    os.symlink("/proc/self/fd/2", f"{root}/dev/stderr")
    owner = f"uid={uid},gid={gid}"
    os.makedirs(root + "/dev/shm", mode=0o755)
    _mount("tmpfs", root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"size=4m,mode=0700,{owner}")
    work_mb = int(config["work_mb"])
    os.makedirs(root + "/work", mode=0o755)
    _mount(
        "tmpfs",
        root + "/work",
        "tmpfs",
        MS_NOSUID | MS_NODEV,
        f"size={work_mb}m,nr_inodes=4096,mode=0700,{owner}",
    )
    os.makedirs(root + "/tmp", mode=0o755)
    _mount(root + "/work", root + "/tmp", None, MS_BIND)
    os.makedirs(root + "/proc", mode=0o555)
    # A user namespace may not mount a procfs over a masked one (containers);
    # then there is no /proc at all, which Python tolerates.
    with contextlib.suppress(SetupError):
        _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Nothing of the skeleton itself is writable: only /work, /tmp and /dev/shm are.
    _mount(None, root, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def enter_root(root: str) -> None:
    os.chdir(root)
    if SYS_PIVOT_ROOT is not None:
        # pivot_root(".", ".") stacks the old root on the new one; detaching it
        # leaves no path back to the host's tree (pivot_root(2), NOTES).
        _check(_libc.syscall(SYS_PIVOT_ROOT, b".", b"."), "pivot_root")
        _check(_libc.umount2(b".", MNT_DETACH), "umount old root")
    else:
        os.chroot(".")
    os.chdir("/")


# --- the snippet ------------------------------------------------------------


def set_limits(limits: dict[str, int]) -> None:
    cpu = int(limits["cpu_s"])
    # The soft limit sends SIGXCPU, the hard one a second later SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    for name, key in (
        ("RLIMIT_AS", "address_space_bytes"),
        ("RLIMIT_NPROC", "processes"),
        ("RLIMIT_NOFILE", "open_files"),
        ("RLIMIT_FSIZE", "file_size_bytes"),
    ):
        value = int(limits[key])
        resource.setrlimit(getattr(resource, name), (value, value))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))


def exec_snippet(config: dict[str, Any], uid: int, gid: int, status_fd: int) -> NoReturn:
    try:
        os.close(status_fd)
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        set_limits(config["limits"])
        if os.getuid() == 0 and uid != 0:
            os.setgroups([])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.umask(0o077)
        os.chdir("/work")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": "/work",
            "TMPDIR": "/work",
            "LANG": "C.UTF-8",
        }
        python = config["python"]
        os.execve(python, [python, "-I", "-X", "utf8", SNIPPET], env)
    except BaseException as exc:
        os.write(2, f"sandbox: could not start the snippet: {exc}\n".encode())
    os._exit(SETUP_FAILED)


def run_init(config: dict[str, Any], code: bytes, status_fd: int) -> NoReturn:
    """PID 1 of the new PID namespace: build the root, start the snippet, reap."""
    try:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        # A non-dumpable init cannot be ptraced or read through /proc by the snippet.
        _prctl(PR_SET_DUMPABLE, 0)
        uid, gid = int(config["uid"]), int(config["gid"])
        _mount(None, "/", None, MS_REC | MS_PRIVATE)
        build_root(STAGING, config, uid, gid)
        enter_root(STAGING)
        socket.sethostname("sandbox")
        loopback_up()
        with open(SNIPPET, "wb") as f:
            f.write(code)
        os.chown(SNIPPET, uid, gid)
        os.chmod(SNIPPET, 0o600)
    except (OSError, SetupError) as exc:
        _fail(status_fd, f"{exc}")
    snippet = os.fork()
    if snippet == 0:
        exec_snippet(config, uid, gid, status_fd)
    while True:
        # Reap every child (orphans re-parent to us); stop when the snippet ends.
        pid, status = os.waitpid(-1, 0)
        if pid == snippet:
            break
    if os.WIFSIGNALED(status):
        _report(status_fd, {"signal": os.WTERMSIG(status)})
        os._exit(128 + os.WTERMSIG(status))
    code_ = os.WEXITSTATUS(status)
    _report(status_fd, {"exit_code": code_})
    os._exit(code_)


def main() -> NoReturn:
    config: dict[str, Any] = json.loads(sys.argv[1])
    status_fd = int(config["status_fd"])
    try:
        # If the service dies, so does the sandbox (and with init, all of it).
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        code = sys.stdin.buffer.read()
        user_mode = os.getuid() != 0
        if user_mode:
            config["uid"], config["gid"] = os.getuid(), os.getgid()
        enter_namespaces(user_mode)
    except (OSError, SetupError) as exc:
        _fail(status_fd, f"{exc}")
    init = os.fork()
    if init == 0:
        run_init(config, code, status_fd)
    _, status = os.waitpid(init, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    main()
