//! The directories of wheels the tests install into plugins, downloaded by this crate's
//! build from the pinned lists in `requirements.txt` and `native-requirements.txt`.

/// Where the wheels are: a directory for pip's `--find-links`.
pub const WHEELS_DIR: &str = env!("SLUICE_TEST_WHEELS");

/// Where the native wheels for the machine's Python are (numpy): a directory for pip's
/// `--find-links`.
pub const NATIVE_WHEELS_DIR: &str = env!("SLUICE_TEST_NATIVE_WHEELS");
