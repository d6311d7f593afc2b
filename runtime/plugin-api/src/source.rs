//! Reading a plugin's code from its plugin directory, and nothing outside it.

use crate::{InvocationError, PluginRef};
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::io;
use std::path::{Component, Path};

/// The directory of the plugin directory that `install package` installs into, which
/// every plugin sees (read-only) and imports from.
pub const PACKAGES_DIR: &str = ".packages";

/// Where a plugin sees the packages installed for its database (`install package` with a
/// database's token), beside [`PACKAGES_DIR`]; they come first on its `sys.path`.
pub const DATABASE_PACKAGES_DIR: &str = ".database-packages";

/// A plugin's code, ready to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginSource {
    /// A single file: its name and source text.
    File {
        /// The name relative to the plugin directory.
        name: String,
        /// The source text.
        code: String,
    },
    /// A package directory holding `__init__.py`, by its name in the plugin directory.
    Package(String),
}

/// `name` as a path relative to the plugin directory, or `None` when it is empty or
/// could leave the directory (`..`, `.`, a root or a prefix). Symlinks are stopped later,
/// by resolving the path through a handle on the directory.
pub fn inside_plugin_dir(name: &str) -> Option<&Path> {
    let relative = Path::new(name);
    let normal = relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    (!name.is_empty() && normal).then_some(relative)
}

impl PluginRef {
    /// Reads the plugin through a handle on its directory, so that neither `..`, an
    /// absolute name nor a symlink can reach outside it.
    ///
    /// # Errors
    ///
    /// [`InvocationError::PluginFile`] when the name tries to leave the plugin directory,
    /// the plugin does not exist, a directory has no `__init__.py`, or a file is not UTF-8.
    pub fn read(&self) -> Result<PluginSource, InvocationError> {
        let name = self.name.trim_end_matches('/');
        let traversal = || {
            InvocationError::PluginFile(format!(
                "Path traversal detected: plugin filename '{}' attempts to access files \
                 outside the plugin directory",
                self.name
            ))
        };
        let relative = inside_plugin_dir(name).ok_or_else(traversal)?;
        // The error does not name the directory: it is the server's path.
        let dir = Dir::open_ambient_dir(&self.plugin_dir, ambient_authority()).map_err(|e| {
            InvocationError::PluginFile(format!("cannot open the plugin directory: {e}"))
        })?;
        let not_found = || InvocationError::PluginFile(format!("Plugin not found: {name}"));
        let metadata = dir.metadata(relative).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(),
            io::ErrorKind::PermissionDenied => traversal(),
            _ => InvocationError::PluginFile(format!("cannot read plugin {name}: {e}")),
        })?;
        if metadata.is_dir() {
            if !dir.exists(relative.join("__init__.py")) {
                return Err(InvocationError::PluginFile(format!(
                    "Multi-file plugin directory must contain __init__.py: {name}"
                )));
            }
            return Ok(PluginSource::Package(name.to_string()));
        }
        let bytes = dir.read(relative).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => not_found(),
            _ => InvocationError::PluginFile(format!("cannot read plugin {name}: {e}")),
        })?;
        let code = String::from_utf8(bytes).map_err(|e| {
            InvocationError::PluginFile(format!(
                "plugin file {name} is not valid UTF-8 (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ))
        })?;
        Ok(PluginSource::File {
            name: name.to_string(),
            code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn plugin(dir: &Path, name: &str) -> Result<PluginSource, InvocationError> {
        PluginRef::new(dir.to_path_buf(), name.to_string()).read()
    }

    fn message(result: Result<PluginSource, InvocationError>) -> String {
        match result {
            Err(e) => e.to_string(),
            Ok(source) => panic!("expected an error, read {source:?}"),
        }
    }

    #[test]
    fn reads_files_and_packages_and_refuses_everything_else() {
        let root = std::env::temp_dir().join(format!("sluice-source-{}", std::process::id()));
        let plugins = root.join("plugins");
        fs::create_dir_all(plugins.join("pkg")).expect("create dirs");
        fs::create_dir_all(plugins.join("no_init")).expect("create dirs");
        fs::write(plugins.join("a.py"), "x = 1\n").expect("write");
        fs::write(plugins.join("pkg/__init__.py"), "").expect("write");
        fs::write(plugins.join("bad.py"), b"x = '\xff'\n").expect("write");
        fs::write(root.join("secret.py"), "secret\n").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink(root.join("secret.py"), plugins.join("link.py"))
            .expect("symlink");

        assert_eq!(
            plugin(&plugins, "a.py"),
            Ok(PluginSource::File {
                name: "a.py".into(),
                code: "x = 1\n".into()
            })
        );
        assert_eq!(
            plugin(&plugins, "pkg/"),
            Ok(PluginSource::Package("pkg".into()))
        );
        assert_eq!(
            message(plugin(&plugins, "missing.py")),
            "Plugin not found: missing.py"
        );
        assert!(message(plugin(&plugins, "no_init")).contains("must contain __init__.py"));
        assert!(message(plugin(&plugins, "bad.py")).contains("not valid UTF-8"));
        for escaping in [
            "../secret.py",
            "/etc/passwd",
            "pkg/../../secret.py",
            "link.py",
        ] {
            assert!(
                message(plugin(&plugins, escaping)).starts_with("Path traversal detected"),
                "{escaping} was not refused as traversal"
            );
        }
        fs::remove_dir_all(&root).expect("clean up");
    }
}
