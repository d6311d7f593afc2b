//! Running pip for an install: within the install's deadline (killed past it), in an
//! empty directory of its own, its output kept in files and its failure told with the
//! end of what it said. Installs run one at a time ([`INSTALLING`]).

use crate::error::ApiError;
use std::ffi::OsString;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How packages are installed (`sluice serve --package-manager`).
#[derive(Debug, Clone)]
pub enum PackageManager {
    /// `PYTHON -m pip install`, with this Python executable, each install within
    /// `timeout`.
    Pip {
        /// The Python executable.
        python: String,
        /// How long an install may take.
        timeout: Duration,
    },
    /// Installs are refused with 403.
    Disabled,
}

/// One install at a time: two pips writing the same directory would mix their files.
/// Held by the blocking task itself, which goes on even if the request is dropped.
pub(crate) static INSTALLING: Mutex<()> = Mutex::new(());

/// How often a running pip is looked at, for its deadline.
const PIP_POLL: Duration = Duration::from_millis(50);

/// One install's runs of pip.
pub(crate) struct Pip<'a> {
    pub(crate) python: &'a str,
    /// The install's time limit, for messages.
    pub(crate) timeout: Duration,
    /// When the install's time is up.
    pub(crate) deadline: Instant,
    /// What is installed, for messages.
    pub(crate) requirements: &'a [String],
    /// What a failure says before pip's reason, if anything.
    pub(crate) failed_because: &'static str,
}

impl Pip<'_> {
    /// Runs `pip ARGS` until the deadline; returns the end of its output.
    pub(crate) fn run(&self, args: &[OsString]) -> Result<String, ApiError> {
        let python = self.python;
        let internal = |what: &str, e: std::io::Error| ApiError::Internal(format!("{what}: {e}"));
        // Where no file is: a requirement pip would read as a relative path finds nothing.
        let empty = tempfile::tempdir().map_err(|e| internal("cannot make pip's directory", e))?;
        // Its output goes to files (beside the working directory, where pip reads
        // nothing), so that a full pipe never stalls it while it is waited for.
        let output_files =
            tempfile::tempdir().map_err(|e| internal("cannot make pip's directory", e))?;
        let output_file = |name: &str| {
            std::fs::File::create(output_files.path().join(name))
                .map_err(|e| internal("cannot make pip's output file", e))
        };
        let mut pip = Command::new(python)
            .current_dir(empty.path())
            .args(["-m", "pip"])
            .args(&args[..1])
            .args(["--disable-pip-version-check", "--no-input"])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(output_file("stdout")?)
            .stderr(output_file("stderr")?)
            .spawn()
            .map_err(|e| internal(&format!("cannot run `{python} -m pip`"), e))?;
        let status = loop {
            if let Some(status) = pip.try_wait().map_err(|e| internal("pip vanished", e))? {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = pip.kill();
                let _ = pip.wait();
                return Err(ApiError::GatewayTimeout(format!(
                    "installing {} took longer than {} (the server's \
                     --package-install-timeout) and was stopped; nothing was installed",
                    self.requirements.join(" "),
                    humantime::format_duration(self.timeout)
                )));
            }
            std::thread::sleep(PIP_POLL);
        };
        let read = |name: &str| std::fs::read(output_files.path().join(name)).unwrap_or_default();
        let (stdout, stderr) = (read("stdout"), read("stderr"));
        let last_lines = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        };
        if !status.success() {
            let stderr = last_lines(&stderr);
            if stderr.contains("No module named pip") {
                return Err(ApiError::Internal(format!(
                    "`{python} -m pip` is not available on the server: {stderr}"
                )));
            }
            let because = match self.failed_because {
                "" => String::new(),
                because => format!(" ({because})"),
            };
            return Err(ApiError::BadRequest(format!(
                "installing {} failed{because}: {stderr}",
                self.requirements.join(" "),
            )));
        }
        Ok(last_lines(&stdout))
    }
}
