//! A small disk of the test's own: a tmpfs of a given size mounted on an
//! empty directory, to fill up and then grow (what freeing space does),
//! unmounted on drop. Mounting needs root, which the test machines and CI
//! run as; without it the test stops with one line saying so.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    /// The mount point's parent, removed after the unmount.
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `6m`, `64m`).
    pub fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            &path,
        );
        SmallDisk { _dir: dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Grows (or shrinks) the disk in place: what is on it stays.
    pub fn resize(&self, size: &str) {
        mount(&["-o", &format!("remount,size={size}")], &self.path);
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process still holding a file must not fail the drop.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount(args: &[&str], at: &Path) {
    let out = Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .unwrap_or_else(|e| panic!("running mount: {e}"));
    assert!(
        out.status.success(),
        "mount {args:?} {} failed (the small-disk tests need root): {}",
        at.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}
