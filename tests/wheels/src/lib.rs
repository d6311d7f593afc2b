//! The directory of pure-Python wheels the tests install into plugins, downloaded by
//! this crate's build from the pinned list in `requirements.txt`.

/// Where the wheels are: a directory for pip's `--find-links`.
pub const WHEELS_DIR: &str = env!("SLUICE_TEST_WHEELS");
