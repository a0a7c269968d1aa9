//! A small filesystem the test owns: a tmpfs mounted on a temporary
//! directory (the suite runs as root, as CI does), filled and emptied on
//! demand to play a full disk that later gets its space back.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop.
pub struct SmallDisk {
    dir: tempfile::TempDir,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB. Fails (never skips) when it cannot.
    pub fn mount(mib: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount(8)");
        assert!(
            out.status.success(),
            "this test mounts a {mib} MiB tmpfs to play a full disk, which needs root \
             (CI and `make test` run as root; run it as root, e.g. `sudo -E make test`): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let filler = dir.path().join("filler");
        SmallDisk { dir, filler }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem refuses more: the disk is full.
    pub fn fill(&self) {
        let mut file = std::fs::File::create(&self.filler).expect("create the filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        let small = [0u8; 512];
        while file.write_all(&small).is_ok() {}
        let _ = file.sync_all();
    }

    /// Deletes the filler: the space comes back.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
