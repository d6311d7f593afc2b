//! The plugin directory as the HTTP API changes it: writing one plugin file, replacing a
//! package directory at once, and listing the files of a plugin; and where plugins are
//! ([`PluginAreas`]): the server's shared directory, and one area per database.
//!
//! Every name is relative to the directory and resolved through a handle on it
//! (cap-std), so no name, `..` or symlink reaches outside. Changes are serialised, and a
//! file appears whole or not at all: it is written under a temporary name and renamed.

use crate::disk::{BLOCK_BYTES, charged_bytes, tree_bytes};
use crate::environment::Environment;
use cap_std::ambient_authority;
use cap_std::fs::{Dir, Metadata};
use sluice_catalog::{DbId, PluginArea};
use sluice_plugin_api::{PACKAGES_DIR, PluginRef, inside_plugin_dir};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

/// The path in the plugin repository that `gh:<path>` names, as plain names joined by
/// `/`: percent-encoding decoded (once; a `%` left after that is refused) and `\` read as
/// `/`, as servers along the way may read them. `None` when a part could leave the
/// repository or change the URL: empty, `.`, `..`, or holding a control character, `?`
/// or `#`.
pub fn repository_path(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    if decoded.contains('%') {
        return None;
    }
    let slashed = decoded.replace('\\', "/");
    let plain = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && !part.chars().any(|c| c.is_control() || c == '?' || c == '#')
    };
    slashed.split('/').all(plain).then_some(slashed)
}

/// Where the plugin directory keeps the copy of the repository plugin `gh:<path>`, or
/// `None` for a path [`repository_path`] refuses.
pub fn repository_copy(path: &str) -> Option<String> {
    repository_path(path).map(|path| format!(".repository/{path}"))
}

/// The name in the plugin directory of a trigger's `plugin_filename`: itself, or the
/// kept copy of a `gh:` plugin (a path refused then is its own name, which reading
/// refuses too).
pub fn local_name(plugin_filename: &str) -> std::borrow::Cow<'_, str> {
    match plugin_filename.strip_prefix("gh:") {
        Some(path) => repository_copy(path)
            .unwrap_or_else(|| plugin_filename.to_string())
            .into(),
        None => plugin_filename.into(),
    }
}

/// Why a change to the plugin directory was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginDirError {
    /// The name could leave the plugin directory.
    #[error(
        "Path traversal detected: plugin filename '{0}' attempts to access files outside the plugin directory"
    )]
    Traversal(String),
    /// A file larger than it may be.
    #[error("{name} is over {max_bytes} bytes")]
    TooLarge {
        /// The file.
        name: String,
        /// Its bound.
        max_bytes: u64,
    },
    /// A change that would take a database's area past its quota.
    #[error(
        "the plugin area would hold {would_hold} bytes (each file charged in whole blocks of \
         4 KiB): its max-plugin-bytes quota is {max_bytes}"
    )]
    OverQuota {
        /// The bytes it would hold.
        would_hold: u64,
        /// The quota.
        max_bytes: u64,
    },
    /// A package directory without `__init__.py`.
    #[error("Multi-file plugin directory must contain __init__.py: {0}")]
    MissingInit(String),
    /// A change the filesystem refused.
    #[error("cannot change plugin file {name}: {source}")]
    Io {
        /// The plugin file or directory.
        name: String,
        /// What the filesystem said.
        source: io::Error,
    },
}

/// One file of a plugin, as `system.plugin_files` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFile {
    /// The file's name: the plugin's name for a single file, the path inside the
    /// package for a package (`models/processor.py`).
    pub file_name: String,
    /// The file's path relative to the plugin directory.
    pub file_path: String,
    /// Its size.
    pub size_bytes: u64,
    /// When it last changed, in milliseconds since the epoch.
    pub last_modified_ms: i64,
}

/// What a plugin name refers to in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginKind {
    /// A single `.py` file.
    File,
    /// A package: a directory holding `__init__.py`.
    Package,
}

/// Where plugins are: the server's shared plugin directory (`--plugin-dir`: the admin's
/// files, the repository's copies, the installed packages), and an area per database for
/// the plugins that tokens managing it upload. The areas are outside the shared
/// directory (`<data-dir>/plugins/<database id>/`), so no name a trigger gives for a
/// shared plugin can reach one; a database deleted and created again has a new id, and
/// so an empty area.
#[derive(Debug)]
pub struct PluginAreas {
    shared: Arc<PluginDir>,
    /// Holds one directory per database id.
    databases: PathBuf,
    /// Holds each database's package environment, by id.
    environments: PathBuf,
    /// The areas opened so far, each with its own lock on changes.
    areas: Mutex<HashMap<DbId, Arc<PluginDir>>>,
}

impl PluginAreas {
    /// The shared plugin directory `shared`, the databases' areas under `databases`,
    /// and their package environments under `environments`.
    pub fn new(shared: PathBuf, databases: PathBuf, environments: PathBuf) -> Self {
        Self {
            shared: Arc::new(PluginDir::new(shared)),
            databases,
            environments,
            areas: Mutex::default(),
        }
    }

    /// The packages every plugin may import (`.packages` in the shared directory).
    pub fn shared_environment(&self) -> Environment {
        let root = self.shared.root();
        Environment::new(root.join(PACKAGES_DIR), root.join(".packages-builds"))
    }

    /// The packages the plugins of `database` import first.
    pub fn database_environment(&self, database: DbId) -> Environment {
        Environment::new(
            self.environments.join(database.to_string()),
            self.environments.join(".builds").join(database.to_string()),
        )
    }

    /// The shared plugin directory.
    pub fn shared(&self) -> &Arc<PluginDir> {
        &self.shared
    }

    fn areas(&self) -> std::sync::MutexGuard<'_, HashMap<DbId, Arc<PluginDir>>> {
        self.areas.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The area of `database`, made on first use.
    ///
    /// # Errors
    ///
    /// [`PluginDirError::Io`] when it cannot be made.
    pub fn database(&self, database: DbId) -> Result<Arc<PluginDir>, PluginDirError> {
        let mut areas = self.areas();
        if let Some(area) = areas.get(&database) {
            return Ok(Arc::clone(area));
        }
        let root = self.databases.join(database.to_string());
        std::fs::create_dir_all(&root).map_err(|source| PluginDirError::Io {
            name: format!("the plugin area of database {database}"),
            source,
        })?;
        let area = Arc::new(PluginDir::new(root));
        areas.insert(database, Arc::clone(&area));
        Ok(area)
    }

    /// The plugin `plugin_filename` of `area` of `database` (a `gh:` plugin: the shared
    /// copy), with the shared packages; for a tenant's trigger (`tenants`) also the
    /// database's own, which its tenants install. Never for the admin's: a tenant must
    /// not put code into a trigger that reaches every database.
    pub fn plugin(
        &self,
        area: PluginArea,
        database: DbId,
        plugin_filename: &str,
        tenants: bool,
    ) -> PluginRef {
        PluginRef {
            plugin_dir: self.dir_of(area, database, plugin_filename),
            name: local_name(plugin_filename).into_owned(),
            packages: self.shared_environment().path().to_path_buf(),
            database_packages: tenants
                .then(|| self.database_environment(database).path().to_path_buf()),
        }
    }

    /// The files of the plugin `plugin_filename` of `area` of `database`.
    pub fn files(
        &self,
        area: PluginArea,
        database: DbId,
        plugin_filename: &str,
    ) -> Vec<PluginFile> {
        PluginDir::new(self.dir_of(area, database, plugin_filename))
            .files(&local_name(plugin_filename))
    }

    fn dir_of(&self, area: PluginArea, database: DbId, plugin_filename: &str) -> PathBuf {
        if area.is_shared() || plugin_filename.starts_with("gh:") {
            self.shared.root().to_path_buf()
        } else {
            self.databases.join(database.to_string())
        }
    }

    /// Where a tenant's `plugin_filename` is: its database's area when that holds it,
    /// else the shared directory.
    pub fn locate(&self, database: DbId, plugin_filename: &str) -> PluginArea {
        let own = self.databases.join(database.to_string());
        let in_own = !plugin_filename.starts_with("gh:")
            && PluginDir::new(own)
                .kind(plugin_filename)
                .is_ok_and(|kind| kind.is_some());
        if in_own {
            PluginArea::Database
        } else {
            PluginArea::Shared
        }
    }

    /// Deletes the areas and package environments of the databases for which `deleted`
    /// holds.
    pub fn remove_areas(&self, deleted: impl Fn(DbId) -> bool) {
        self.areas().retain(|database, _| !deleted(*database));
        for id in numbered_entries(&self.environments) {
            if deleted(DbId::new(id)) {
                self.database_environment(DbId::new(id)).remove();
            }
        }
        for id in numbered_entries(&self.databases) {
            if deleted(DbId::new(id))
                && let Err(e) = std::fs::remove_dir_all(self.databases.join(id.to_string()))
            {
                tracing::warn!(
                    database_id = id,
                    "cannot remove the plugin area of a deleted database: {e}"
                );
            }
        }
    }
}

/// Refuses a change to `dir` that replaces `replaced` bytes of files with `added` bytes
/// if the directory would then hold more than `max_bytes`.
fn within(dir: &Dir, replaced: u64, added: u64, max_bytes: u64) -> Result<(), PluginDirError> {
    if max_bytes == u64::MAX {
        return Ok(());
    }
    let would_hold = tree_bytes(dir).saturating_sub(replaced) + added;
    if would_hold > max_bytes {
        return Err(PluginDirError::OverQuota {
            would_hold,
            max_bytes,
        });
    }
    Ok(())
}

/// The entries of `dir` named by a number (database ids).
fn numbered_entries(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

/// The server's plugin directory (`--plugin-dir`), or a database's area.
#[derive(Debug)]
pub struct PluginDir {
    root: PathBuf,
    /// Held while the directory changes, so that two uploads never interleave.
    changing: Mutex<()>,
}

impl PluginDir {
    /// The plugin directory at `root`.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            changing: Mutex::new(()),
        }
    }

    /// Where the directory is.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn open(&self) -> Result<Dir, PluginDirError> {
        Dir::open_ambient_dir(&self.root, ambient_authority()).map_err(|source| {
            PluginDirError::Io {
                name: self.root.display().to_string(),
                source,
            }
        })
    }

    /// Whether `name` is a file or a package, or `None` when it does not exist.
    ///
    /// # Errors
    ///
    /// [`PluginDirError::Traversal`] for a name outside the directory.
    pub fn kind(&self, name: &str) -> Result<Option<PluginKind>, PluginDirError> {
        let relative = checked(name)?;
        let metadata = match self.open()?.metadata(relative) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(name, e)),
        };
        Ok(Some(if metadata.is_dir() {
            PluginKind::Package
        } else {
            PluginKind::File
        }))
    }

    /// Writes `content` to the file `name`, creating its parent directories; the file is
    /// replaced whole.
    ///
    /// # Errors
    ///
    /// [`PluginDirError::Traversal`] or [`PluginDirError::Io`].
    pub fn write_file(&self, name: &str, content: &[u8]) -> Result<(), PluginDirError> {
        self.write_file_within(name, content, u64::MAX)
    }

    /// [`Self::write_file`], if the directory then holds at most `max_bytes` of files.
    ///
    /// # Errors
    ///
    /// As [`Self::write_file`], and [`PluginDirError::OverQuota`].
    pub fn write_file_within(
        &self,
        name: &str,
        content: &[u8],
        max_bytes: u64,
    ) -> Result<(), PluginDirError> {
        let relative = checked(name)?;
        let _changing = self.lock();
        let dir = self.open()?;
        let replaced = dir.metadata(relative).map_or(0, |m| charged_bytes(m.len()));
        within(
            &dir,
            replaced,
            charged_bytes(content.len() as u64),
            max_bytes,
        )?;
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            dir.create_dir_all(parent).map_err(|e| io_error(name, e))?;
        }
        let temporary = temporary_name(relative, "upload");
        dir.write(&temporary, content)
            .and_then(|()| dir.rename(&temporary, &dir, relative))
            .map_err(|e| {
                let _ = dir.remove_file(&temporary);
                io_error(name, e)
            })
    }

    /// Replaces the package directory `name` with exactly `files` (relative path and
    /// content), which must include `__init__.py`. The new tree is written beside the
    /// old one and swapped in by two renames, so a reader sees the old package or the new
    /// one, never a mix.
    ///
    /// # Errors
    ///
    /// [`PluginDirError::Traversal`] for any name outside the package,
    /// [`PluginDirError::MissingInit`], or [`PluginDirError::Io`]; on error the old
    /// package is left in place.
    pub fn replace_package(
        &self,
        name: &str,
        files: &[(String, String)],
    ) -> Result<(), PluginDirError> {
        self.replace_package_within(name, files, u64::MAX)
    }

    /// [`Self::replace_package`], if the directory then holds at most `max_bytes` of
    /// files.
    ///
    /// # Errors
    ///
    /// As [`Self::replace_package`], and [`PluginDirError::OverQuota`].
    pub fn replace_package_within(
        &self,
        name: &str,
        files: &[(String, String)],
        max_bytes: u64,
    ) -> Result<(), PluginDirError> {
        let name = name.trim_end_matches('/');
        let package = checked(name)?;
        for (path, _) in files {
            checked(path).map_err(|_| PluginDirError::Traversal(format!("{name}/{path}")))?;
        }
        if !files.iter().any(|(path, _)| path == "__init__.py") {
            return Err(PluginDirError::MissingInit(name.to_string()));
        }
        let _changing = self.lock();
        let dir = self.open()?;
        let replaced = dir
            .open_dir(package)
            .map_or(0, |old| BLOCK_BYTES + tree_bytes(&old));
        let added = BLOCK_BYTES
            + files
                .iter()
                .map(|(_, content)| charged_bytes(content.len() as u64))
                .sum::<u64>();
        within(&dir, replaced, added, max_bytes)?;
        let staged = temporary_name(package, "tmp");
        let previous = temporary_name(package, "old");
        let io = |e| io_error(name, e);
        remove_tree(&dir, &staged).map_err(io)?;
        remove_tree(&dir, &previous).map_err(io)?;
        let written = (|| {
            dir.create_dir_all(&staged)?;
            for (path, content) in files {
                let target = staged.join(path);
                if let Some(parent) = target.parent() {
                    dir.create_dir_all(parent)?;
                }
                dir.write(target, content)?;
            }
            io::Result::Ok(())
        })();
        if let Err(e) = written {
            let _ = remove_tree(&dir, &staged);
            return Err(io(e));
        }
        let existed = dir.exists(package);
        if existed {
            dir.rename(package, &dir, &previous).map_err(io)?;
        }
        if let Err(e) = dir.rename(&staged, &dir, package) {
            if existed {
                let _ = dir.rename(&previous, &dir, package);
            }
            let _ = remove_tree(&dir, &staged);
            return Err(io(e));
        }
        remove_tree(&dir, &previous).map_err(io)
    }

    /// The files of the plugin `name`: the file itself, or every `.py` file of a package
    /// (outside `__pycache__`), sorted by name. A plugin that does not exist, or a name
    /// outside the directory, has none.
    pub fn files(&self, name: &str) -> Vec<PluginFile> {
        let name = name.trim_end_matches('/');
        let Ok(relative) = checked(name) else {
            return Vec::new();
        };
        let Ok(dir) = self.open() else {
            return Vec::new();
        };
        let Ok(metadata) = dir.metadata(relative) else {
            return Vec::new();
        };
        if !metadata.is_dir() {
            return vec![plugin_file(name.to_string(), name.to_string(), &metadata)];
        }
        let mut found = Vec::new();
        if let Ok(package) = dir.open_dir(relative) {
            collect_python_files(&package, Path::new(""), &mut found);
        }
        let mut files: Vec<PluginFile> = found
            .into_iter()
            .map(|(inner, metadata)| {
                let inner = inner.to_string_lossy().into_owned();
                plugin_file(inner.clone(), format!("{name}/{inner}"), &metadata)
            })
            .collect();
        files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
        files
    }

    /// The content of the file `name`, if it is at most `max_bytes` long.
    ///
    /// # Errors
    ///
    /// [`PluginDirError::Traversal`] for a name outside the directory (symlinks
    /// included), [`PluginDirError::Io`] when it cannot be read, [`PluginDirError::TooLarge`].
    pub fn read_file(&self, name: &str, max_bytes: u64) -> Result<Vec<u8>, PluginDirError> {
        let relative = checked(name)?;
        let dir = self.open()?;
        let io = |e: io::Error| match e.kind() {
            io::ErrorKind::PermissionDenied => PluginDirError::Traversal(name.to_string()),
            _ => io_error(name, e),
        };
        let mut file = dir.open(relative).map_err(io)?;
        let mut content = Vec::new();
        io::Read::read_to_end(&mut io::Read::take(&mut file, max_bytes + 1), &mut content)
            .map_err(io)?;
        if content.len() as u64 > max_bytes {
            return Err(PluginDirError::TooLarge {
                name: name.to_string(),
                max_bytes,
            });
        }
        Ok(content)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.changing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn checked(name: &str) -> Result<&Path, PluginDirError> {
    inside_plugin_dir(name).ok_or_else(|| PluginDirError::Traversal(name.to_string()))
}

fn io_error(name: &str, source: io::Error) -> PluginDirError {
    PluginDirError::Io {
        name: name.to_string(),
        source,
    }
}

/// A sibling of `path` named `.<name>.<suffix>`: hidden, and never a plugin name anyone
/// would give.
fn temporary_name(path: &Path, suffix: &str) -> PathBuf {
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{file_name}.{suffix}"))
}

fn remove_tree(dir: &Dir, path: &Path) -> io::Result<()> {
    match dir.remove_dir_all(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn collect_python_files(dir: &Dir, prefix: &Path, found: &mut Vec<(PathBuf, Metadata)>) {
    let Ok(entries) = dir.entries() else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Ok(metadata) = entry.metadata() else {
            continue;
        };
        let path = prefix.join(&name);
        if metadata.is_dir() {
            if name != "__pycache__"
                && let Ok(inner) = entry.open_dir()
            {
                collect_python_files(&inner, &path, found);
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            found.push((path, metadata));
        }
    }
}

fn plugin_file(file_name: String, file_path: String, metadata: &Metadata) -> PluginFile {
    let last_modified_ms = metadata
        .modified()
        .ok()
        .and_then(|t| t.into_std().duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    PluginFile {
        file_name,
        file_path,
        size_bytes: metadata.len(),
        last_modified_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn each_database_has_an_area_of_its_own_beside_the_shared_plugins() {
        let dir = tempfile::tempdir().expect("temp dir");
        let areas = PluginAreas::new(
            dir.path().join("shared"),
            dir.path().join("areas"),
            dir.path().join("environments"),
        );
        fs::create_dir_all(dir.path().join("shared")).expect("shared");
        areas
            .shared()
            .write_file("both.py", b"shared")
            .expect("written");
        let (a, b) = (DbId::new(1), DbId::new(2));
        areas
            .database(a)
            .and_then(|area| area.write_file("both.py", b"a"))
            .expect("written");
        assert_eq!(areas.locate(a, "both.py"), PluginArea::Database);
        assert_eq!(areas.locate(b, "both.py"), PluginArea::Shared, "b has none");
        assert_eq!(areas.locate(a, "gh:x/y.py"), PluginArea::Shared);
        let read = |area, database| match areas.plugin(area, database, "both.py", true).read() {
            Ok(sluice_plugin_api::PluginSource::File { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(read(PluginArea::Database, a), "a");
        assert_eq!(read(PluginArea::Shared, a), "shared");
        let admins = areas.plugin(PluginArea::Shared, a, "both.py", false);
        assert_eq!(
            admins.database_packages, None,
            "the admin's never see a tenant's"
        );
        let plugin = areas.plugin(PluginArea::Database, a, "both.py", true);
        assert!(plugin.database_packages.is_some());
        assert_eq!(
            plugin.packages,
            dir.path().join("shared").join(PACKAGES_DIR)
        );

        areas.database(b).expect("made");
        areas.remove_areas(|database| database == a);
        assert!(!dir.path().join("areas/1").exists(), "a's went");
        assert!(dir.path().join("areas/2").exists(), "b's stays");
    }

    fn plugin_dir() -> (tempfile::TempDir, PluginDir) {
        let root = tempfile::tempdir().expect("temp dir");
        let plugins = PluginDir::new(root.path().to_path_buf());
        (root, plugins)
    }

    fn names(files: &[PluginFile]) -> Vec<&str> {
        files.iter().map(|f| f.file_name.as_str()).collect()
    }

    #[test]
    fn files_are_written_whole_with_their_parents_and_overwritten() {
        let (root, plugins) = plugin_dir();
        plugins.write_file("a.py", b"x = 1\n").expect("written");
        plugins
            .write_file("pkg/models/m.py", b"y = 2\n")
            .expect("written");
        plugins.write_file("a.py", b"x = 3\n").expect("overwritten");
        assert_eq!(
            fs::read_to_string(root.path().join("a.py")).expect("test setup"),
            "x = 3\n"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("pkg/models/m.py")).expect("test setup"),
            "y = 2\n"
        );
        assert_eq!(
            plugins.kind("a.py").expect("test setup"),
            Some(PluginKind::File)
        );
        assert_eq!(
            plugins.kind("pkg").expect("test setup"),
            Some(PluginKind::Package)
        );
        assert_eq!(plugins.kind("missing.py").expect("test setup"), None);
        let leftovers: Vec<_> = fs::read_dir(root.path())
            .expect("test setup")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn names_outside_the_directory_are_refused() {
        let (root, plugins) = plugin_dir();
        let outside = root.path().join("outside");
        fs::create_dir(&outside).expect("dir");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, root.path().join("link")).expect("symlink");
        for name in ["../x.py", "/etc/x.py", "a/../../x.py", ""] {
            assert!(
                matches!(
                    plugins.write_file(name, b""),
                    Err(PluginDirError::Traversal(_))
                ),
                "{name} was not refused"
            );
        }
        #[cfg(unix)]
        assert!(plugins.write_file("link/x.py", b"").is_err());
        assert!(!outside.join("x.py").exists());
        let refused = plugins.replace_package("pkg", &[("../../x.py".into(), String::new())]);
        assert!(matches!(refused, Err(PluginDirError::Traversal(_))));
    }

    #[test]
    fn a_package_is_replaced_as_a_whole() {
        let (root, plugins) = plugin_dir();
        plugins
            .replace_package(
                "pkg",
                &[
                    ("__init__.py".into(), "from .util import f\n".into()),
                    ("util.py".into(), "def f(): return 1\n".into()),
                    ("old.py".into(), String::new()),
                    ("__pycache__/x.py".into(), String::new()),
                ],
            )
            .expect("created");
        assert_eq!(
            names(&plugins.files("pkg/")),
            ["__init__.py", "old.py", "util.py"]
        );
        plugins
            .replace_package(
                "pkg",
                &[
                    ("__init__.py".into(), "from .models.m import g\n".into()),
                    ("models/m.py".into(), "def g(): return 2\n".into()),
                ],
            )
            .expect("replaced");
        let files = plugins.files("pkg");
        assert_eq!(names(&files), ["__init__.py", "models/m.py"]);
        assert_eq!(files[1].file_path, "pkg/models/m.py");
        assert_eq!(files[1].size_bytes, 18);
        assert!(files[1].last_modified_ms > 0);
        assert!(!root.path().join("pkg/old.py").exists());
        assert!(!root.path().join(".pkg.old").exists());
        assert!(!root.path().join(".pkg.tmp").exists());

        let refused = plugins.replace_package("pkg", &[("util.py".into(), String::new())]);
        assert!(matches!(refused, Err(PluginDirError::MissingInit(_))));
        assert_eq!(names(&plugins.files("pkg")), ["__init__.py", "models/m.py"]);
    }

    #[test]
    fn repository_paths_are_plain_names_under_the_repository() {
        for (given, read) in [
            ("examples/wal.py", "examples/wal.py"),
            ("examples%2Fwal%20plugin.py", "examples/wal plugin.py"),
            ("examples\\wal.py", "examples/wal.py"),
            ("température.py", "température.py"),
        ] {
            assert_eq!(repository_path(given).as_deref(), Some(read), "{given}");
        }
        for refused in [
            "../outside.py",
            "%2e%2e/%2e%2e/outside.py",
            "..\\..\\outside.py",
            "a/%2E%2E/../b.py",
            "%252e%252e/x.py",
            "/etc/passwd",
            "a//b.py",
            "./a.py",
            "a.py?x=1",
            "a.py#frag",
            "a\nb.py",
            "%ff.py",
            "",
        ] {
            assert_eq!(repository_path(refused), None, "{refused}");
        }
        assert_eq!(
            local_name("gh:x%2Fy.py"),
            ".repository/x/y.py",
            "triggers run the copy fetching made"
        );
        assert_eq!(local_name("gh:../x.py"), "gh:../x.py");
    }

    #[test]
    fn files_are_read_only_from_inside_and_within_their_bound() {
        let (root, plugins) = plugin_dir();
        fs::write(root.path().join("req.txt"), "abc").expect("written");
        assert_eq!(plugins.read_file("req.txt", 3).expect("read"), b"abc");
        assert!(matches!(
            plugins.read_file("req.txt", 2),
            Err(PluginDirError::TooLarge { .. })
        ));
        assert!(matches!(
            plugins.read_file("../req.txt", 10),
            Err(PluginDirError::Traversal(_))
        ));
        #[cfg(unix)]
        {
            let outside = tempfile::tempdir().expect("temp dir");
            fs::write(outside.path().join("secret"), "s").expect("written");
            std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
                .expect("symlink");
            assert!(matches!(
                plugins.read_file("link", 10),
                Err(PluginDirError::Traversal(_))
            ));
        }
    }

    #[test]
    fn a_single_file_plugin_lists_itself_and_missing_plugins_nothing() {
        let (_root, plugins) = plugin_dir();
        plugins.write_file("one.py", b"abc").expect("written");
        let files = plugins.files("one.py");
        assert_eq!(files.len(), 1);
        assert_eq!(
            (files[0].file_name.as_str(), files[0].file_path.as_str()),
            ("one.py", "one.py")
        );
        assert_eq!(files[0].size_bytes, 3);
        assert!(plugins.files("missing.py").is_empty());
        assert!(plugins.files("../one.py").is_empty());
    }
}
