//! What files cost a database's quotas of plugin and package bytes: the space a disk
//! gives them, whole blocks, at least one per file, directory or link. So a quota of
//! bytes bounds how many files a tenant can make too, not only how large they are: a
//! million empty files would cost nothing by their lengths, and the file system's inodes
//! would run out for everyone.

use cap_std::ambient_authority;
use cap_std::fs::Dir;
use std::path::Path;

/// The unit of space charged: a common file system block.
pub const BLOCK_BYTES: u64 = 4096;

/// What a file of `len` bytes is charged: its whole blocks, at least one.
pub fn charged_bytes(len: u64) -> u64 {
    len.div_ceil(BLOCK_BYTES).max(1).saturating_mul(BLOCK_BYTES)
}

/// What everything under `dir` is charged, its subdirectories and their entries
/// included (links are not followed: each is charged a block).
pub fn tree_bytes(dir: &Dir) -> u64 {
    let Ok(entries) = dir.entries() else {
        return 0;
    };
    let mut total = 0_u64;
    for entry in entries.flatten() {
        let charged = match entry.file_type() {
            Ok(kind) if kind.is_dir() => {
                BLOCK_BYTES + entry.open_dir().map_or(0, |inner| tree_bytes(&inner))
            }
            Ok(kind) if kind.is_file() => charged_bytes(entry.metadata().map_or(0, |m| m.len())),
            _ => BLOCK_BYTES,
        };
        total = total.saturating_add(charged);
    }
    total
}

/// [`tree_bytes`] of the directory at `path` (0 when it cannot be opened).
pub fn tree_bytes_at(path: &Path) -> u64 {
    Dir::open_ambient_dir(path, ambient_authority()).map_or(0, |dir| tree_bytes(&dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_costs_whole_blocks_and_directories_one_each() {
        assert_eq!(charged_bytes(0), BLOCK_BYTES);
        assert_eq!(charged_bytes(1), BLOCK_BYTES);
        assert_eq!(charged_bytes(BLOCK_BYTES + 1), 2 * BLOCK_BYTES);
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("package")).expect("made");
        std::fs::write(dir.path().join("package/empty.py"), "").expect("written");
        std::fs::write(dir.path().join("large.py"), vec![b'#'; 5000]).expect("written");
        std::os::unix::fs::symlink("/", dir.path().join("link")).expect("linked");
        assert_eq!(tree_bytes_at(dir.path()), 5 * BLOCK_BYTES);
        assert_eq!(tree_bytes_at(&dir.path().join("missing")), 0);
    }
}
