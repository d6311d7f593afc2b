//! The directory on the host that holds every instance's `/tmp`, and emptying one.

use rustix::fs::{FlockOperation, Mode, OFlags, flock};
use std::collections::hash_map::RandomState;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

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
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)?;
        let lock = File::open(staging.path())?;
        flock(&lock, FlockOperation::NonBlockingLockExclusive)?;
        // A name another user took in a shared parent is tried again under another.
        let mut attempts = 0;
        let path = loop {
            let path = parent.join(format!(
                "{ROOT_PREFIX}{}-{:016x}",
                std::process::id(),
                RandomState::new().build_hasher().finish()
            ));
            match std::fs::rename(staging.path(), &path) {
                Ok(()) => break path,
                Err(_) if attempts < 8 => attempts += 1,
                // The staging directory goes with `staging`.
                Err(error) => return Err(error),
            }
        };
        // Renamed: nothing of it is left under the staging name.
        let _ = staging.keep();
        Ok(Self {
            path,
            _lock: lock,
            next: AtomicU64::new(0),
            held: AtomicU64::new(0),
            limit,
        })
    }

    /// A new, empty directory for one instance.
    pub(super) fn instance_dir(&self) -> std::io::Result<PathBuf> {
        let name = self.next.fetch_add(1, Ordering::Relaxed).to_string();
        let path = self.path.join(name);
        std::fs::create_dir(&path)?;
        Ok(path)
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
        if !name
            .to_str()
            .is_some_and(|name| name.starts_with(ROOT_PREFIX))
        {
            continue;
        }
        let path = entry.path();
        if let Err(error) = remove_orphan(&path) {
            tracing::warn!(path = %path.display(), "cannot remove what a stopped server's plugins left in /tmp: {error}");
        }
    }
}

/// Removes `path` if it is a directory of this user's, open to it alone, that no server
/// holds locked. It is opened without following a link, checked and emptied through
/// that handle (on Linux, through `/proc/self/fd`), so that nothing another user puts
/// in a shared parent such as `/dev/shm`, a link in its place included, is touched.
fn remove_orphan(path: &Path) -> std::io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Ok(dir) = rustix::fs::open(path, flags, Mode::empty()) else {
        return Ok(());
    };
    let stat = rustix::fs::fstat(&dir)?;
    let own = stat.st_uid == rustix::process::geteuid().as_raw() && stat.st_mode & 0o077 == 0;
    if !own || flock(&dir, FlockOperation::NonBlockingLockExclusive).is_err() {
        // Not one of this user's, or its server runs.
        return Ok(());
    }
    let through_handle = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !through_handle.is_dir() {
        return Ok(());
    }
    drain(&through_handle)?;
    std::fs::remove_dir(path)
}

/// Removes everything in `dir`, not following links, and without recursion: a
/// directory's entries are moved up into `dir` (under names no entry has) before it is
/// removed, so however deep a plugin nested directories, at most one is open at a time.
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
        for (path, is_dir) in held {
            if !is_dir {
                std::fs::remove_file(&path)?;
                continue;
            }
            loop {
                let children = entries(&path)?;
                if children.is_empty() {
                    break;
                }
                for (child, _) in children {
                    std::fs::rename(child, unused_name())?;
                }
            }
            std::fs::remove_dir(&path)?;
        }
    }
}

/// What `dir` holds now, each entry's path and whether it is a directory (not following
/// a link): read whole, and the directory closed, before any of it is moved.
fn entries(dir: &Path) -> std::io::Result<Vec<(PathBuf, bool)>> {
    std::fs::read_dir(dir)?
        .map(|entry| {
            let entry = entry?;
            Ok((entry.path(), entry.file_type()?.is_dir()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::{mkdirat, open as open_dir, openat};

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
    fn only_a_stopped_servers_own_directory_is_removed() {
        let parent = tempfile::tempdir().expect("temp dir");
        let running = ScratchRoot::new(parent.path(), 1 << 20).expect("root");
        let mode = std::fs::metadata(&running.path)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "only the server's user may enter it");
        std::fs::write(running.instance_dir().expect("dir").join("f"), "x").expect("write");
        let named = |name: &str| parent.path().join(format!("{ROOT_PREFIX}{name}"));
        // A stopped server's: the user's own, open to it alone, unlocked.
        let stopped = named("1-stopped");
        std::fs::create_dir_all(stopped.join("0/sub")).expect("mkdir");
        std::fs::set_permissions(&stopped, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        // Not one of a server's: open to others.
        let shared = named("2-shared");
        std::fs::create_dir(&shared).expect("mkdir");
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        // A link in a server directory's name, to something else.
        let elsewhere = tempfile::tempdir().expect("temp dir");
        std::fs::write(elsewhere.path().join("keep"), "kept").expect("write");
        std::os::unix::fs::symlink(elsewhere.path(), named("3-link")).expect("symlink");
        let another = ScratchRoot::new(parent.path(), 1 << 20).expect("another root");
        let mut names: Vec<_> = std::fs::read_dir(parent.path())
            .expect("read")
            .map(|entry| entry.expect("entry").path())
            .collect();
        names.sort();
        let mut expected = vec![
            running.path.clone(),
            another.path.clone(),
            shared.clone(),
            named("3-link"),
        ];
        expected.sort();
        assert_eq!(names, expected);
        assert_eq!(
            std::fs::read_to_string(elsewhere.path().join("keep")).expect("kept"),
            "kept"
        );
        drop(running);
        drop(another);
        let left = std::fs::read_dir(parent.path()).expect("read").count();
        assert_eq!(left, 2, "the shared directory and the link stay");
    }
}
