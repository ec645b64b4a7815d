#!/usr/bin/env python3
"""Self-check for scripts/lazyfs.py (run as root after scripts/ensure-fuse.sh).

Mounts lazyfs on temporary directories and, with SQLite in WAL mode, commits
rows one by one in a child process, SIGKILLs it (no clean close, which would
checkpoint and sync), cuts the power, remounts and counts what survived:
  a) synchronous=FULL fsyncs the WAL on every commit: every row must survive;
  b) synchronous=NORMAL does not fsync on commit: the rows must be lost.
Before that it checks the overlay on a plain file. Exits non-zero on failure.
"""
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

LAZYFS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lazyfs.py")
ROWS = 50

# Runs in a child: makes a durable baseline (table + one row, checkpointed),
# then commits ROWS rows one at a time, says so, and waits to be killed.
WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
db.execute("INSERT INTO t (v) VALUES ('baseline')")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("PRAGMA synchronous=" + sys.argv[2])
for i in range(int(sys.argv[3])):
    db.execute("INSERT INTO t (v) VALUES (?)", ("row %d" % i,))
print("committed", flush=True)
sys.stdin.read()
"""


def wait_until(cond, what, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.02)


class Mount:
    """lazyfs.py running on backing -> mnt, for the length of a with-block."""

    def __init__(self, backing, mnt):
        self.backing, self.mnt = backing, mnt

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, LAZYFS, self.backing, self.mnt])

        def live():
            if self.proc.poll() is not None:
                raise RuntimeError("lazyfs exited with %s" % self.proc.returncode)
            return os.path.ismount(self.mnt)

        wait_until(live, "the mount")
        return self

    def ctl(self, word):
        with open(os.path.join(self.mnt, ".lazyfs-ctl"), "w") as f:
            f.write(word)

    def __exit__(self, *exc):
        subprocess.run(["fusermount3", "-u", self.mnt], check=False)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["fusermount3", "-uz", self.mnt], check=False)


def check_plain_file(tmp):
    backing, mnt = os.path.join(tmp, "plain-b"), os.path.join(tmp, "plain-m")
    os.mkdir(backing), os.mkdir(mnt)
    with Mount(backing, mnt) as m:
        fd = os.open(os.path.join(mnt, "f"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.write(fd, b"a" * 5000)
            os.fsync(fd)
            os.pwrite(fd, b"b" * 100, 4990)  # unsynced: spans a page boundary
            os.ftruncate(fd, 9000)
            seen = os.pread(fd, 10000, 0)
            on_disk = os.path.getsize(os.path.join(backing, "f"))
            m.ctl("cut")
            after = os.pread(fd, 10000, 0)  # same, still open fd
        finally:
            os.close(fd)
    ok = (seen == b"a" * 4990 + b"b" * 100 + bytes(3910) and on_disk == 5000
          and after == b"a" * 5000)
    print("plain file: before cut %d bytes visible, %d on disk; after cut %d bytes, %s"
          % (len(seen), on_disk, len(after), "as synced" if after == b"a" * 5000 else "WRONG"))
    return ok


def power_cut(tmp, sync_mode):
    """Returns (rows that survived, integrity_check) for one scenario."""
    backing = os.path.join(tmp, sync_mode.lower() + "-b")
    mnt = os.path.join(tmp, sync_mode.lower() + "-m")
    os.mkdir(backing), os.mkdir(mnt)
    path = os.path.join(mnt, "test.db")
    with Mount(backing, mnt) as m:
        child = subprocess.Popen([sys.executable, "-c", WRITER, path, sync_mode, str(ROWS)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = child.stdout.readline().strip()
        child.kill()  # SIGKILL: no close, no checkpoint
        child.wait()
        if line != "committed":
            raise RuntimeError("writer failed (%s)" % child.returncode)
        m.ctl("cut")
    with Mount(backing, mnt):
        db = sqlite3.connect(path)
        try:
            rows = db.execute("SELECT count(*) FROM t WHERE v != 'baseline'").fetchone()[0]
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            db.close()
    return rows, integrity


def main():
    if os.geteuid() != 0:
        sys.exit("lazyfs_smoke: must run as root")
    signal.alarm(180)  # a hung FUSE mount must fail the check, not stall it
    failures = []
    with tempfile.TemporaryDirectory(prefix="lazyfs-smoke-") as tmp:
        if not check_plain_file(tmp):
            failures.append("plain file overlay")
        for mode, want_all in (("FULL", True), ("NORMAL", False)):
            rows, integrity = power_cut(tmp, mode)
            print("synchronous=%s: %d of %d committed rows survived the power cut; "
                  "integrity_check: %s" % (mode, rows, ROWS, integrity))
            if integrity != "ok":
                failures.append("%s: database corrupt" % mode)
            if want_all and rows != ROWS:
                failures.append("%s lost rows it had fsynced" % mode)
            if not want_all and rows == ROWS:
                failures.append("%s lost nothing: unsynced writes survived the cut" % mode)
    if failures:
        print("lazyfs_smoke: FAILED: " + "; ".join(failures))
        sys.exit(1)
    print("lazyfs_smoke: OK")


if __name__ == "__main__":
    main()
