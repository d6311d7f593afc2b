//! The Python layer the pyo3 runtime runs: `guest-sdk/python/sluice_plugin_runtime`, the
//! same package the sandbox's runtime is built from, built into the binary and written to
//! a directory of the process's own when the runtime starts.

use std::io;
use std::path::Path;

/// The package's name, and the directory its files are written to.
pub(crate) const PACKAGE: &str = "sluice_plugin_runtime";

macro_rules! layer_file {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../guest-sdk/python/sluice_plugin_runtime/",
                $name
            )),
        )
    };
}

/// Every file of the package: its name and its text.
const FILES: &[(&str, &str)] = &[
    layer_file!("__init__.py"),
    layer_file!("api.py"),
    layer_file!("columns.py"),
    layer_file!("door.py"),
    layer_file!("egress.py"),
    layer_file!("line_builder.py"),
    layer_file!("line_shapes.py"),
    layer_file!("native.py"),
    layer_file!("on_import.py"),
    layer_file!("plugin.py"),
    layer_file!("posix.py"),
    layer_file!("responses.py"),
    layer_file!("serving.py"),
];

/// Writes the package into `dir`, which is then put on the interpreter's path.
pub(crate) fn write_out(dir: &Path) -> io::Result<()> {
    let package = dir.join(PACKAGE);
    std::fs::create_dir_all(&package)?;
    for (name, text) in FILES {
        std::fs::write(package.join(name), text)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_package_is_built_in() {
        let source = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../guest-sdk/python")
            .join(PACKAGE);
        let mut on_disk: Vec<String> = std::fs::read_dir(source)
            .expect("the package is there")
            .map(|entry| {
                entry
                    .expect("listed")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|name| name.ends_with(".py"))
            .collect();
        on_disk.sort();
        let built_in: Vec<&str> = FILES.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, built_in);
    }
}
