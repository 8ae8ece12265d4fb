//! An advisory, exclusive file lock (`flock(2)`), released when dropped or when the process dies,
//! so a crashed holder never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;

use anyhow::{Context, Result};

/// Holds an exclusive `flock` on a file until dropped.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock on `path` (created if absent), printing `waiting` once if another process
    /// holds it (unless it is empty), then blocking until it is free.
    pub fn acquire(path: &Path, waiting: &str) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        if flock(&file, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            if !waiting.is_empty() {
                println!("{waiting}");
            }
            flock(&file, libc::LOCK_EX).with_context(|| format!("locking {}", path.display()))?;
        }
        Ok(Self { _file: file })
    }
}

/// Applies `flock(2)` `operation` to `file`.
#[allow(unsafe_code)]
fn flock(file: &File, operation: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the descriptor is valid and owned by `file`, borrowed for the duration of the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
