#!/usr/bin/env python3
"""lazyfs: a FUSE passthrough filesystem for tests that simulates a power cut.

Usage: python3 scripts/lazyfs.py BACKING_DIR MOUNTPOINT
(runs in the foreground until `fusermount3 -u MOUNTPOINT`; needs
scripts/ensure-fuse.sh). In the spirit of Jepsen's LazyFS:

* File data written through the mount (write, truncate, ftruncate) is kept in
  an in-memory overlay per file (4 KiB pages plus the pending size), the way a
  page cache holds dirty pages. Reads and stat see the overlay at once.
* fsync/fdatasync of a file writes that file's overlay to BACKING_DIR and
  fsyncs it there. close() does not, as with a real kernel.
* Control file MOUNTPOINT/.lazyfs-ctl (write-only, not listed by readdir):
      echo cut  > MOUNTPOINT/.lazyfs-ctl   # power cut: drop every overlay
      echo sync > MOUNTPOINT/.lazyfs-ctl   # clean shutdown: persist them all
  The write returns once the command is done. Unmounting (or killing this
  process) drops pending overlays too, so unmount without `sync` = power cut.

Simplifications (documented on purpose):
* Metadata (create, mkdir, unlink, rename, chmod, utimens, ...) goes straight
  to BACKING_DIR, so directory entries survive a cut even if the directory was
  never fsynced; fsyncdir is a no-op.
* Files named *-shm bypass the overlay: SQLite's WAL index is mmapped
  MAP_SHARED and is not durable state (SQLite rebuilds it after a crash).
* POSIX/flock locks are left to the kernel (no `lock` op), which is right for
  processes on one machine.
* Kill the writers before `cut`: a write that lands after it is kept. Cached
  pages of dropped files are invalidated, best effort, for files still open.
"""
import errno
import logging
import os
import sys
import threading

import mfusepy as fuse

PAGE = 4096
CTL = "/.lazyfs-ctl"
CTL_FH = 1 << 62  # file handle of the control file; real fds are small
BYPASS_SUFFIXES = ("-shm",)

_libfuse = fuse._libfuse  # for fuse_invalidate_path, which mfusepy does not wrap
_libfuse.fuse_invalidate_path.argtypes = [fuse.ctypes.c_void_p, fuse.ctypes.c_char_p]


class Overlay:
    """Unsynced state of one backing file (one inode).

    size: the size readers see. base: bytes of the backing file that are
    still valid (a truncate below it hides the rest, which then reads as
    zeros). blocks: page index -> full page of new content. Invariant:
    base <= size and no block lies at or past size.
    """

    def __init__(self, fd, path):
        self.fd = os.dup(fd)  # own fd: data must outlive the handle that wrote it
        self.path = path
        self.size = self.base = os.fstat(fd).st_size
        self.blocks = {}

    def _page(self, p):
        blk = self.blocks.get(p)
        if blk is None:
            start = p * PAGE
            n = max(0, min(self.base, start + PAGE) - start)
            blk = bytearray(os.pread(self.fd, n, start)) if n else bytearray()
            blk.extend(bytes(PAGE - len(blk)))
            self.blocks[p] = blk
        return blk

    def write(self, data, off):
        end, src = off + len(data), memoryview(data)
        for p in range(off // PAGE, (end - 1) // PAGE + 1):
            s, e = max(off, p * PAGE), min(end, (p + 1) * PAGE)
            self._page(p)[s - p * PAGE:e - p * PAGE] = src[s - off:e - off]
        self.size = max(self.size, end)

    def truncate(self, n):
        if n < self.size:
            for p in [p for p in self.blocks if p * PAGE >= n]:
                del self.blocks[p]
            blk = self.blocks.get(n // PAGE)
            if blk is not None:  # zero the cut-off tail so a later extend reads zeros
                blk[n % PAGE:] = bytes(PAGE - n % PAGE)
            self.base = min(self.base, n)
        self.size = n

    def read(self, size, off):
        end = min(off + size, self.size)
        if end <= off:
            return b""
        n = min(end, self.base) - off
        buf = bytearray(os.pread(self.fd, n, off)) if n > 0 else bytearray()
        buf.extend(bytes(end - off - len(buf)))  # past base: zeros
        for p in range(off // PAGE, (end - 1) // PAGE + 1):
            blk = self.blocks.get(p)
            if blk is not None:
                s, e = max(off, p * PAGE), min(end, (p + 1) * PAGE)
                buf[s - off:e - off] = blk[s - p * PAGE:e - p * PAGE]
        return bytes(buf)

    def persist(self):
        if self.base < os.fstat(self.fd).st_size:
            os.ftruncate(self.fd, self.base)
        for p in sorted(self.blocks):
            os.pwrite(self.fd, self.blocks[p][:min(PAGE, self.size - p * PAGE)], p * PAGE)
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)

    def close(self):
        os.close(self.fd)


class LazyFS(fuse.Operations):
    use_ns = True  # nanosecond timestamps in getattr/utimens

    def __init__(self, root):
        self.root = os.path.realpath(root)
        # Not named `lock`: mfusepy would register any attribute named like a
        # FUSE op, and POSIX locks must stay with the kernel.
        self.mutex = threading.Lock()  # guards overlays and handles
        self.overlays = {}  # (st_dev, st_ino) -> Overlay, only while it has pending data
        self.handles = {}  # fh (a backing fd) -> (dev, ino), or None to bypass the overlay

    def _real(self, path):
        return self.root + path

    @staticmethod
    def _key(st):
        return (st.st_dev, st.st_ino)

    def _overlay(self, key, fd, path):
        # Caller holds the mutex. The path is kept to invalidate the kernel's
        # cache of the file on a cut; it is the current one after a rename.
        ov = self.overlays.get(key)
        if ov is None:
            ov = self.overlays[key] = Overlay(fd, path)
        ov.path = path
        return ov

    def _drop_if_last_link(self, path):
        # Called before unlink/rename-over: forget a file's overlay when it is
        # going away, so a reused inode number never inherits stale data.
        try:
            st = os.lstat(self._real(path))
        except FileNotFoundError:
            return
        if st.st_nlink <= 1:
            with self.mutex:
                ov = self.overlays.pop(self._key(st), None)
            if ov is not None:
                ov.close()

    # --- control file ---------------------------------------------------------

    def _command(self, word):
        with self.mutex:
            overlays, self.overlays = self.overlays, {}
            for ov in overlays.values():
                if word == "sync":
                    ov.persist()
                ov.close()
        if word == "cut":
            # Outside the lock: invalidating may wait on reads served by other threads.
            f = _libfuse.fuse_get_context().contents.fuse
            for ov in overlays.values():
                _libfuse.fuse_invalidate_path(f, ov.path.encode(errors="surrogateescape"))
        logging.info("lazyfs: %s (%d file(s) had unsynced writes)", word, len(overlays))

    # --- files ------------------------------------------------------------------

    def getattr(self, path, fh=None):
        if path == CTL:
            return {"st_mode": 0o100200, "st_nlink": 1, "st_size": 0}
        st = os.fstat(fh) if fh is not None and fh != CTL_FH else os.lstat(self._real(path))
        attrs = {k: getattr(st, k) for k in ("st_mode", "st_nlink", "st_uid", "st_gid",
                                              "st_size", "st_ino", "st_blocks")}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        with self.mutex:
            ov = self.overlays.get(self._key(st))
            if ov is not None:
                attrs["st_size"] = ov.size
        return attrs

    def _open(self, path, fd, flags):
        st = os.fstat(fd)
        key = None if path.endswith(BYPASS_SUFFIXES) else self._key(st)
        with self.mutex:
            self.handles[fd] = key
        if flags & os.O_TRUNC:
            self._truncate(path, 0, fd)
        return fd

    def open(self, path, flags):
        if path == CTL:
            return CTL_FH
        # Always O_RDWR: the overlay reads pages and fsync persists through it.
        # No O_APPEND (pwrite would ignore offsets; the kernel computes them)
        # and no O_TRUNC (that is an overlay operation).
        return self._open(path, os.open(self._real(path), os.O_RDWR), flags)

    def create(self, path, mode, flags):
        if path == CTL:
            raise fuse.FuseOSError(errno.EEXIST)
        fd = os.open(self._real(path), os.O_RDWR | os.O_CREAT | (flags & os.O_EXCL), mode)
        return self._open(path, fd, flags)

    def release(self, path, fh):
        if fh != CTL_FH:
            with self.mutex:
                self.handles.pop(fh, None)
            os.close(fh)

    def read(self, path, size, offset, fh):
        with self.mutex:
            ov = self.overlays.get(self.handles.get(fh))
            if ov is not None:
                return ov.read(size, offset)
        return os.pread(fh, size, offset)

    def write(self, path, data, offset, fh):
        if fh == CTL_FH:
            words = data.decode(errors="replace").split()
            if not words or any(w not in ("cut", "sync") for w in words):
                raise fuse.FuseOSError(errno.EINVAL)
            for w in words:
                self._command(w)
            return len(data)
        with self.mutex:
            key = self.handles.get(fh)
            if key is not None:
                self._overlay(key, fh, path).write(data, offset)
                return len(data)
        return os.pwrite(fh, data, offset)

    def _truncate(self, path, length, fd):
        key = None if path.endswith(BYPASS_SUFFIXES) else self._key(os.fstat(fd))
        if key is None:
            return os.ftruncate(fd, length)
        with self.mutex:
            self._overlay(key, fd, path).truncate(length)

    def truncate(self, path, length, fh=None):
        if path == CTL:
            return
        if fh is not None:
            return self._truncate(path, length, fh)
        fd = os.open(self._real(path), os.O_RDWR)  # mfusepy passes no fh with libfuse 3
        try:
            self._truncate(path, length, fd)
        finally:
            os.close(fd)

    def fsync(self, path, datasync, fh):
        if fh == CTL_FH:
            return
        with self.mutex:
            ov = self.overlays.pop(self.handles.get(fh), None)
            if ov is not None:
                try:
                    ov.persist()
                finally:
                    ov.close()

    def fsyncdir(self, path, datasync, fh):
        return 0  # metadata is already applied to the backing directory

    # --- metadata: straight to the backing directory ----------------------------

    def readdir(self, path, fh):
        return [".", ".."] + os.listdir(self._real(path))

    def mkdir(self, path, mode):
        os.mkdir(self._real(path), mode)

    def rmdir(self, path):
        os.rmdir(self._real(path))

    def unlink(self, path):
        if path == CTL:
            raise fuse.FuseOSError(errno.EPERM)
        self._drop_if_last_link(path)
        os.unlink(self._real(path))

    def rename(self, old, new):
        if CTL in (old, new):
            raise fuse.FuseOSError(errno.EPERM)
        self._drop_if_last_link(new)
        os.rename(self._real(old), self._real(new))

    def link(self, target, source):
        os.link(self._real(source), self._real(target))

    def symlink(self, target, source):
        os.symlink(source, self._real(target))

    def readlink(self, path):
        return os.readlink(self._real(path))

    def chmod(self, path, mode):
        os.chmod(self._real(path), mode)

    def chown(self, path, uid, gid):
        os.chown(self._real(path), uid, gid, follow_symlinks=False)

    def utimens(self, path, times=None):
        os.utime(self._real(path), ns=times, follow_symlinks=False)

    def statfs(self, path):
        sv = os.statvfs(self._real(path))
        return {k: getattr(sv, k) for k in ("f_bsize", "f_frsize", "f_blocks", "f_bfree",
                                            "f_bavail", "f_files", "f_ffree", "f_namemax")}


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: lazyfs.py BACKING_DIR MOUNTPOINT")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    # Multithreaded (mfusepy's default); no direct_io, so the kernel page cache
    # backs shared mmaps (SQLite's -shm); auto_unmount cleans up if we are killed;
    # max_idle_threads is libfuse's default, set to silence a libfuse 3.14 warning.
    fuse.FUSE(LazyFS(sys.argv[1]), sys.argv[2], foreground=True, fsname="lazyfs",
              auto_unmount=True, max_idle_threads=10)


if __name__ == "__main__":
    main()
