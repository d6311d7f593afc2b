//! Starts the machine's CPython in this process, and says why when it cannot.
//!
//! pyo3 starts the interpreter with `Py_InitializeEx`, which ends the process when
//! CPython cannot start: no standard library where it looks (the Python the server was
//! built with is gone, or `PYTHONHOME` points elsewhere). The server would die with
//! CPython's fatal error instead of a start-up message. Started from a `PyConfig` the
//! same way, CPython returns the error instead.

use pyo3::ffi;
use std::ffi::{CStr, c_char};
use std::mem::MaybeUninit;

/// Starts the interpreter with the settings `Py_InitializeEx(0)` uses, unless it runs
/// already, then gives up its lock, as pyo3 expects to find it. CPython's reason when it
/// cannot start.
#[expect(
    unsafe_code,
    reason = "CPython's documented initialisation: each config is initialised before use \
    and cleared after, and the lock is released once, by the thread that took it"
)]
pub(crate) fn start() -> Result<(), String> {
    // SAFETY: see the reason above. Called once per process, under `INTERPRETER`'s
    // `OnceLock`, before pyo3 touches the interpreter.
    unsafe {
        if ffi::Py_IsInitialized() != 0 {
            return Ok(());
        }
        // `Py_InitializeEx`'s "compat" settings: the Python ones, without locale
        // coercion or UTF-8 mode, which would change the server's own locale.
        let mut preconfig = MaybeUninit::<ffi::PyPreConfig>::uninit();
        ffi::PyPreConfig_InitPythonConfig(preconfig.as_mut_ptr());
        let preconfig = preconfig.assume_init_mut();
        preconfig.parse_argv = 0;
        preconfig.utf8_mode = 0;
        preconfig.coerce_c_locale = 0;
        preconfig.coerce_c_locale_warn = 0;
        failed(ffi::Py_PreInitialize(preconfig))?;

        let mut config = MaybeUninit::<ffi::PyConfig>::uninit();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let config = config.assume_init_mut();
        // The server's signals, arguments and standard streams stay the server's.
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        config.configure_c_stdio = 0;
        let status = ffi::Py_InitializeFromConfig(config);
        ffi::PyConfig_Clear(config);
        failed(status)?;
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// CPython's message when `status` is an error (or an exit).
#[expect(
    unsafe_code,
    reason = "a PyStatus's strings are null or CPython's static C strings"
)]
fn failed(status: ffi::PyStatus) -> Result<(), String> {
    // SAFETY: see the reason above.
    unsafe {
        if ffi::PyStatus_Exception(status) == 0 {
            return Ok(());
        }
        let text = |text: *const c_char| {
            (!text.is_null()).then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
        };
        Err(match (text(status.func), text(status.err_msg)) {
            (Some(func), Some(message)) => format!("{func}: {message}"),
            (None, Some(message)) => message,
            _ if ffi::PyStatus_IsExit(status) != 0 => {
                format!("CPython exited with status {}", status.exitcode)
            }
            _ => "CPython gave no reason".to_string(),
        })
    }
}
