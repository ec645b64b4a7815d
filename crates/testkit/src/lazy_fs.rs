//! A disk that can lose power: `scripts/lazyfs.py` (a FUSE filesystem in
//! the spirit of Jepsen's LazyFS) mounted over a backing directory keeps
//! every write since a file's last fsync in memory; [`LazyFs::cut_power`]
//! drops them all, as a power cut does, and remounts. Needs root, /dev/fuse
//! and what `scripts/ensure-fuse.sh` installs (run here on first use).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Once;
use std::time::{Duration, Instant};

pub struct LazyFs {
    /// The backing directory (what survives) and the mount point's parent.
    dir: tempfile::TempDir,
    mount: PathBuf,
    process: Option<Child>,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

fn ensure_fuse() {
    static ENSURED: Once = Once::new();
    ENSURED.call_once(|| {
        let status = Command::new("bash")
            .arg(scripts().join("ensure-fuse.sh"))
            .status()
            .expect("running scripts/ensure-fuse.sh");
        assert!(status.success(), "scripts/ensure-fuse.sh failed");
    });
}

impl LazyFs {
    /// Mounts a fresh, empty one.
    pub fn mount() -> LazyFs {
        ensure_fuse();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("backing")).unwrap();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).unwrap();
        let mut fs = LazyFs {
            dir,
            mount,
            process: None,
        };
        fs.start();
        fs
    }

    /// Where to put the files.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// The power cut: every write not yet synced is gone; the filesystem is
    /// mounted again over what was synced. Stop the writers first (a write
    /// after the cut would be kept).
    pub fn cut_power(&mut self) {
        std::fs::write(self.mount.join(".lazyfs-ctl"), "cut").expect("cutting the power");
        self.unmount();
        self.start();
    }

    fn start(&mut self) {
        let child = Command::new("python3")
            .arg(scripts().join("lazyfs.py"))
            .arg(self.dir.path().join("backing"))
            .arg(&self.mount)
            .spawn()
            .expect("starting scripts/lazyfs.py");
        self.process = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mount(&self.mount) {
            if let Some(Ok(Some(status))) = self.process.as_mut().map(Child::try_wait) {
                panic!("lazyfs.py exited with {status} before mounting");
            }
            assert!(Instant::now() < deadline, "lazyfs.py did not mount in 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn unmount(&mut self) {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg(&self.mount)
            .status();
        if let Some(mut child) = self.process.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("fusermount3")
            .arg("-uz")
            .arg(&self.mount)
            .output();
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// Whether `path` is a mount point (another device than its parent's).
fn is_mount(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(here), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    here.dev() != parent.dev()
}
