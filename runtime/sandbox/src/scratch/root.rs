//! The directory on the host that holds every instance's `/tmp`, and emptying one.

use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// How the servers' directories are named: the server's process id and a random part
/// follow (the id for whoever looks; the lock, not the id, says whether it is in use).
const ROOT_PREFIX: &str = "sluice-plugin-tmp-";

/// The directory holding every instance's `/tmp`, and what running calls have written
/// in them together. The server holds a lock on it while it runs; one left by a server
/// that stopped without removing it (killed, or exiting) is removed by the next server
/// that starts in the same parent.
#[derive(Debug)]
pub(crate) struct ScratchRoot {
    path: PathBuf,
    /// Held for the server's lifetime: an exclusive `flock`.
    _lock: File,
    /// Names the next instance's directory.
    next: AtomicU64,
    /// Directories of dropped instances that never held anything, for new ones: making
    /// and removing one costs more than an instance's whole `/tmp` otherwise does.
    unused: Mutex<Vec<PathBuf>>,
    /// What running calls have written, together.
    pub(super) held: AtomicU64,
    pub(super) limit: u64,
}

impl ScratchRoot {
    /// A new directory in `parent`, readable by the server's user only, for calls that
    /// may write `limit` bytes together.
    pub(crate) fn new(parent: &Path, limit: u64) -> std::io::Result<Self> {
        remove_orphans(parent);
        // Made under another name and locked before it is given its own, so that no
        // other server's sweep finds it unlocked.
        let staging = tempfile::Builder::new()
            .prefix(".sluice-plugin-tmp-new-")
            .tempdir_in(parent)?;
        let lock = File::open(staging.path())?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive)?;
        let random = staging
            .path()
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.rsplit('-').next())
            .unwrap_or_default()
            .to_string();
        let path = parent.join(format!("{ROOT_PREFIX}{}-{random}", std::process::id()));
        std::fs::rename(staging.keep(), &path)?;
        Ok(Self {
            path,
            _lock: lock,
            next: AtomicU64::new(0),
            unused: Mutex::new(Vec::new()),
            held: AtomicU64::new(0),
            limit,
        })
    }

    /// An empty directory for one instance: one that was never written in, or a new one.
    pub(super) fn instance_dir(&self) -> std::io::Result<PathBuf> {
        if let Some(path) = self.unused().pop() {
            return Ok(path);
        }
        let name = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let path = self.path.join(name);
        std::fs::create_dir(&path)?;
        Ok(path)
    }

    /// Takes back the directory of an instance whose calls never wrote in it (every
    /// entry made there is counted first): empty, for another instance.
    pub(super) fn reuse(&self, path: PathBuf) {
        self.unused().push(path);
    }

    fn unused(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.unused.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ScratchRoot {
    fn drop(&mut self) {
        if let Err(error) = drain(&self.path).and_then(|()| std::fs::remove_dir(&self.path)) {
            tracing::warn!(path = %self.path.display(), "cannot remove the plugins' /tmp: {error}");
        }
    }
}

/// Removes the directories in `parent` of servers no longer running (no lock held on
/// them): what their plugins' calls left when they stopped.
fn remove_orphans(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_root = name
            .to_str()
            .is_some_and(|name| name.starts_with(ROOT_PREFIX));
        if !is_root || !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let path = entry.path();
        let Ok(lock) = File::open(&path) else {
            continue;
        };
        if flock(&lock, FlockOperation::NonBlockingLockExclusive).is_err() {
            // Its server runs.
            continue;
        }
        if let Err(error) = drain(&path).and_then(|()| std::fs::remove_dir(&path)) {
            tracing::warn!(path = %path.display(), "cannot remove what a stopped server's plugins left in /tmp: {error}");
        }
    }
}

/// Removes everything in `dir`, not following links, and without recursion: a
/// directory's entries are moved up into `dir` (under names no entry has) before it is
/// removed, so however deep a plugin nested directories, at most two are open at once.
pub(super) fn drain(dir: &Path) -> std::io::Result<()> {
    let mut moved = 0u64;
    let mut unused_name = || loop {
        moved += 1;
        let path = dir.join(format!(".drained-{moved}"));
        if path.symlink_metadata().is_err() {
            return path;
        }
    };
    loop {
        let held = entries(dir)?;
        if held.is_empty() {
            return Ok(());
        }
        for entry in held {
            let path = entry.path();
            if !entry.file_type()?.is_dir() {
                std::fs::remove_file(&path)?;
                continue;
            }
            loop {
                let children = entries(&path)?;
                if children.is_empty() {
                    break;
                }
                for child in children {
                    std::fs::rename(child.path(), unused_name())?;
                }
            }
            std::fs::remove_dir(&path)?;
        }
    }
}

/// What `dir` holds now: read whole before any of it is moved.
fn entries(dir: &Path) -> std::io::Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{Mode, OFlags, mkdirat, open as open_dir, openat};

    #[test]
    fn drain_removes_deep_nesting_and_links_without_following_them() {
        let outside = tempfile::tempdir().expect("temp dir");
        std::fs::write(outside.path().join("keep"), "kept").expect("write");
        let dir = tempfile::tempdir().expect("temp dir");
        // Deeper than a path may be long, as a plugin can nest them: one level at a
        // time, each made in the one before.
        let open = |at: &std::os::fd::OwnedFd| {
            openat(at, "d", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).expect("open")
        };
        let mut level = open_dir(
            dir.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .expect("open");
        for _ in 0..3_000 {
            mkdirat(&level, "d", Mode::RWXU).expect("mkdir");
            level = open(&level);
        }
        drop(level);
        std::fs::write(dir.path().join(".drained-1"), "taken name").expect("write");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).expect("symlink");
        drain(dir.path()).expect("drained");
        assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0);
        assert_eq!(
            std::fs::read_to_string(outside.path().join("keep")).expect("kept"),
            "kept"
        );
    }

    #[test]
    fn a_running_servers_directory_is_left_and_a_stopped_ones_removed() {
        let parent = tempfile::tempdir().expect("temp dir");
        let running = ScratchRoot::new(parent.path(), 1 << 20).expect("root");
        std::fs::write(running.instance_dir().expect("dir").join("f"), "x").expect("write");
        let stopped = parent.path().join(format!("{ROOT_PREFIX}1-abc"));
        std::fs::create_dir_all(stopped.join("0/sub")).expect("mkdir");
        let another = ScratchRoot::new(parent.path(), 1 << 20).expect("another root");
        let mut names: Vec<_> = std::fs::read_dir(parent.path())
            .expect("read")
            .map(|entry| entry.expect("entry").path())
            .collect();
        names.sort();
        let mut expected = vec![running.path.clone(), another.path.clone()];
        expected.sort();
        assert_eq!(names, expected);
        drop(running);
        drop(another);
        assert_eq!(std::fs::read_dir(parent.path()).expect("read").count(), 0);
    }
}
