//! Package environments that change whole: an install never leaves a half-installed
//! environment in use.
//!
//! An environment is a symlink (`.packages` in the plugin directory for the shared one,
//! `<data-dir>/plugin-environments/<database id>` for a database's) to one build in a
//! directory of builds. An install copies the current build into a new one, runs the
//! installer there, and only if it succeeds renames a new symlink over the old one: a
//! plugin loading meanwhile sees the old environment or the new one, and a failed install
//! leaves the old one in use. The build before the current one is kept for calls that
//! were still loading from it; older ones are deleted.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Where the directory a server before atomic installs left at the link goes.
const LEGACY: &str = "before-atomic-installs";

/// A package environment: where plugins find it, and where its builds are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The path plugins see: a symlink to the current build (or, as servers before
    /// atomic installs left it, a directory).
    link: PathBuf,
    /// Holds one directory per build, numbered.
    builds: PathBuf,
}

impl Environment {
    /// The environment at `link`, built in `builds`.
    pub fn new(link: PathBuf, builds: PathBuf) -> Self {
        Self { link, builds }
    }

    /// The path plugins see.
    pub fn path(&self) -> &Path {
        &self.link
    }

    /// Makes a new build from a copy of the current one with `build` (given its
    /// directory), and makes it current only if `build` succeeds; returns what `build`
    /// returned. Callers serialise installs into one environment.
    ///
    /// # Errors
    ///
    /// The error of `build`, or I/O errors making the copy or swapping it in; the
    /// environment in use is then the one before.
    pub fn install<T, E: From<io::Error>>(
        &self,
        build: impl FnOnce(&Path) -> Result<T, E>,
    ) -> Result<T, E> {
        fs::create_dir_all(&self.builds)?;
        let numbers = self.numbers()?;
        let next = self
            .builds
            .join((numbers.iter().max().map_or(0, |n| n + 1)).to_string());
        let current = self.current();
        let made = match &current {
            Some(current) => copy_tree(current, &next),
            None => fs::create_dir_all(&next),
        };
        if let Err(e) = made {
            let _ = fs::remove_dir_all(&next);
            return Err(e.into());
        }
        let value = match build(&next) {
            Ok(value) => value,
            Err(e) => {
                let _ = fs::remove_dir_all(&next);
                return Err(e);
            }
        };
        self.swap_to(&next)?;
        // The build before stays for calls still loading from it.
        if current
            .as_ref()
            .is_some_and(|c| c.starts_with(&self.builds))
        {
            let _ = fs::remove_dir_all(self.builds.join(LEGACY));
        }
        let keep = [Some(next), current];
        for number in numbers {
            let old = self.builds.join(number.to_string());
            if !keep.iter().flatten().any(|kept| *kept == old) {
                let _ = fs::remove_dir_all(&old);
            }
        }
        Ok(value)
    }

    /// Deletes the environment and its builds.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.link).or_else(|_| fs::remove_dir_all(&self.link));
        let _ = fs::remove_dir_all(&self.builds);
    }

    /// The numbers of the builds there are.
    fn numbers(&self) -> io::Result<Vec<u64>> {
        Ok(fs::read_dir(&self.builds)?
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect())
    }

    /// The directory in use: the build the link points at, the link itself when it is a
    /// directory, `None` when there is none yet.
    fn current(&self) -> Option<PathBuf> {
        match fs::symlink_metadata(&self.link) {
            Ok(meta) if meta.file_type().is_symlink() => fs::read_link(&self.link).ok(),
            Ok(meta) if meta.is_dir() => Some(self.link.clone()),
            _ => None,
        }
    }

    /// Points the link at `build` with one rename. A directory left at the link by a
    /// server before atomic installs is first moved among the builds (the only moment
    /// the environment is briefly absent).
    fn swap_to(&self, build: &Path) -> io::Result<()> {
        if fs::symlink_metadata(&self.link).is_ok_and(|meta| meta.is_dir()) {
            fs::rename(&self.link, self.builds.join(LEGACY))?;
        }
        let temporary = self.link.with_extension("swap");
        let _ = fs::remove_file(&temporary);
        std::os::unix::fs::symlink(build, &temporary)?;
        fs::rename(&temporary, &self.link)
    }
}

/// Copies the directories and files of `from` into `to` (made); symlinks are left out,
/// so that a copy never reaches outside `from`.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_default()
    }

    #[test]
    fn an_install_changes_the_environment_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("temp dir");
        // As servers before atomic installs left it: a directory.
        let link = dir.path().join(".packages");
        fs::create_dir_all(link.join("old")).expect("legacy");
        fs::write(link.join("old/__init__.py"), "old = 1").expect("legacy");
        let environment = Environment::new(link.clone(), dir.path().join("builds"));

        environment
            .install(|build| fs::write(build.join("new.py"), "new = 1"))
            .expect("installed");
        assert_eq!(read(&link.join("new.py")), "new = 1");
        assert_eq!(read(&link.join("old/__init__.py")), "old = 1", "kept");
        assert!(
            fs::symlink_metadata(&link)
                .expect("there")
                .file_type()
                .is_symlink()
        );

        // A failed install leaves the environment as it was, and no build behind.
        let failed = environment.install(|build| {
            fs::write(build.join("half.py"), "half")?;
            Err::<(), _>(io::Error::other("pip failed"))
        });
        assert!(failed.is_err());
        assert!(!link.join("half.py").exists());
        assert_eq!(read(&link.join("new.py")), "new = 1");

        // Only the current build and the one before are kept.
        for n in 0..3 {
            environment
                .install(|build| fs::write(build.join(format!("v{n}.py")), "x"))
                .expect("installed");
        }
        let builds = fs::read_dir(dir.path().join("builds"))
            .expect("builds")
            .count();
        assert_eq!(builds, 2, "the current build and the one before");
        assert!(link.join("v2.py").exists() && link.join("new.py").exists());

        environment.remove();
        assert!(!link.exists() && !dir.path().join("builds").exists());
    }
}
