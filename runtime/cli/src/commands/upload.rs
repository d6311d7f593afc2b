//! Reading plugin code on the client, for `create trigger --upload` and
//! `update trigger`: a single `.py` file, or a package directory with `__init__.py`.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};

/// Local plugin code to send to the server.
pub enum LocalPlugin {
    /// One file: its base name and content.
    File { name: String, content: String },
    /// A package: the directory's name and its `.py` files (outside `__pycache__`), by
    /// path relative to the directory, with `/` separators.
    Package {
        name: String,
        files: Vec<(String, String)>,
    },
}

impl LocalPlugin {
    /// Reads the plugin at `path`.
    ///
    /// # Errors
    ///
    /// `File not found: PATH`, a directory without `__init__.py`, or an unreadable file.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let metadata = std::fs::metadata(path)
            .with_context(|| format!("File not found: {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", path.display()))?
            .to_string();
        if !metadata.is_dir() {
            let content = read_text(path)?;
            return Ok(Self::File { name, content });
        }
        if !path.join("__init__.py").is_file() {
            bail!(
                "Multi-file plugin directory must contain __init__.py: {}",
                path.display()
            );
        }
        let mut found = Vec::new();
        python_files(path, Path::new(""), &mut found)?;
        found.sort();
        let files = found
            .into_iter()
            .map(|relative| {
                let content = read_text(&path.join(&relative))?;
                let relative = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                Ok((relative, content))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self::Package { name, files })
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn python_files(root: &Path, relative: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let dir = root.join(relative);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = relative.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "__pycache__" {
                python_files(root, &path, found)?;
            }
        } else if path.extension().is_some_and(|e| e == "py") {
            found.push(path);
        }
    }
    Ok(())
}
