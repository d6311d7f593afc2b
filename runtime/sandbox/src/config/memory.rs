//! How much memory the server may use, for the defaults sized from it: the machine's, or
//! less where a control group (a container, a systemd unit) caps the server's.

use std::path::{Path, PathBuf};

/// The memory the server may use: the machine's (`/proc/meminfo`), or its control group's
/// limit where that is lower: cgroup v2's `memory.max`, or v1's `memory.limit_in_bytes`,
/// of the server's own group and of every group above it. 8 GiB where the machine's
/// cannot be read.
pub fn machine_memory_bytes() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| mem_total(&info))
        .unwrap_or(8 << 30);
    let group = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|groups| group_limit(&groups, Path::new("/sys/fs/cgroup")));
    group.map_or(machine, |limit| machine.min(limit))
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn mem_total(info: &str) -> Option<u64> {
    let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// The lowest memory limit on the groups that `/proc/self/cgroup` (`groups`) names, under
/// the cgroup file systems mounted at `root`; `None` where none is set.
fn group_limit(groups: &str, root: &Path) -> Option<u64> {
    // One line per hierarchy, `ID:CONTROLLERS:PATH`: `0::PATH` for v2, and the memory
    // controller's own line for v1.
    groups
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            if controllers.is_empty() {
                lowest_on_path(root, path, "memory.max")
            } else if controllers
                .split(',')
                .any(|controller| controller == "memory")
            {
                lowest_on_path(&root.join("memory"), path, "memory.limit_in_bytes")
            } else {
                None
            }
        })
        .min()
}

/// The lowest limit in `file` of the group at `path` in the hierarchy mounted at
/// `mount`, and of the groups above it.
fn lowest_on_path(mount: &Path, path: &str, file: &str) -> Option<u64> {
    let mut group: PathBuf = mount.join(path.trim_start_matches('/'));
    let mut lowest = None;
    // A path with `..` in it is not the kernel's: read no group outside the mount.
    while group.starts_with(mount) && !path.contains("..") {
        if let Some(limit) = limit_in(&group.join(file)) {
            lowest = Some(lowest.map_or(limit, |lower: u64| lower.min(limit)));
        }
        if group == mount || !group.pop() {
            break;
        }
    }
    lowest
}

/// A limit file's number; `max` (v2's "no limit") and anything unreadable are none. v1's
/// "no limit" is a number beyond any machine's memory, which the caller's `min` ignores.
fn limit_in(file: &Path) -> Option<u64> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, file: &str, content: &str) {
        let path = root.join(file);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("dirs");
        std::fs::write(path, content).expect("write");
    }

    #[test]
    fn the_lowest_limit_of_a_v2_group_and_its_parents_counts() {
        let root = tempfile::tempdir().expect("temp dir");
        write(root.path(), "memory.max", "max\n");
        write(root.path(), "system.slice/memory.max", "1073741824\n");
        write(
            root.path(),
            "system.slice/sluice.service/memory.max",
            "max\n",
        );
        let groups = "0::/system.slice/sluice.service\n";
        assert_eq!(group_limit(groups, root.path()), Some(1 << 30));
    }

    #[test]
    fn a_v1_memory_group_counts_and_its_no_limit_is_a_large_number() {
        let root = tempfile::tempdir().expect("temp dir");
        write(
            root.path(),
            "memory/memory.limit_in_bytes",
            "9223372036854771712",
        );
        write(root.path(), "memory/box/memory.limit_in_bytes", "536870912");
        let groups = "5:devices:/box\n4:memory:/box\n0::/\n";
        assert_eq!(group_limit(groups, root.path()), Some(512 << 20));
        let unlimited = "4:memory:/\n";
        assert_eq!(
            group_limit(unlimited, root.path()),
            Some(9_223_372_036_854_771_712)
        );
    }

    #[test]
    fn no_limit_where_none_is_set_or_readable() {
        let root = tempfile::tempdir().expect("temp dir");
        write(root.path(), "memory.max", "max\n");
        assert_eq!(group_limit("0::/\n", root.path()), None);
        assert_eq!(group_limit("0::/gone\n", root.path()), None);
        assert_eq!(group_limit("not a cgroup line\n", root.path()), None);
        assert_eq!(group_limit("", root.path()), None);
    }

    #[test]
    fn a_path_never_leads_out_of_the_mount() {
        let root = tempfile::tempdir().expect("temp dir");
        write(root.path(), "cgroup/memory.max", "max");
        write(root.path(), "memory.max", "4096");
        let mount = root.path().join("cgroup");
        assert_eq!(group_limit("0::/../\n", &mount), None);
    }

    #[test]
    fn the_machines_memory_is_its_total_at_most() {
        let info = std::fs::read_to_string("/proc/meminfo").expect("Linux");
        let total = mem_total(&info).expect("MemTotal");
        let usable = machine_memory_bytes();
        assert!(usable > 0 && usable <= total, "{usable} of {total}");
    }
}
