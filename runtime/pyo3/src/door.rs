//! The builtin module `_host`: the door of the call that the calling thread runs, as the
//! sandbox's runtime has the door of its instance. `door.py` is the same on both sides.

use pyo3::exceptions::{PyBaseException, PyRuntimeError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sluice_door::{CallState, Stop};
use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::runtime::Handle;

pyo3::create_exception!(
    _host,
    Stopped,
    PyBaseException,
    "The host stopped the call: it went past one of its limits, or broke the door's \
     protocol. A `BaseException`, so that the plugin's `except Exception` goes on past it."
);

/// A call's state while one of its turns runs on this thread.
pub(crate) struct Turn {
    pub(crate) state: CallState,
    /// Where the host calls' futures run, while the thread waits for them.
    runtime: Handle,
    /// Why the call was stopped, if it was: every later message is refused with it.
    pub(crate) stopped: Option<Stop>,
}

impl Turn {
    pub(crate) fn new(state: CallState, runtime: Handle) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            state,
            runtime,
            stopped: None,
        }))
    }
}

thread_local! {
    /// The turn this thread runs, if it runs one.
    static TURN: RefCell<Option<Arc<Mutex<Turn>>>> = const { RefCell::new(None) };
}

/// Runs `f` with `turn` as this thread's: the door messages it sends go to `turn`.
pub(crate) fn with_turn<R>(turn: &Arc<Mutex<Turn>>, f: impl FnOnce() -> R) -> R {
    TURN.with_borrow_mut(|slot| *slot = Some(Arc::clone(turn)));
    let result = f();
    TURN.with_borrow_mut(|slot| *slot = None);
    result
}

/// Hands the host one message of the thread's call and returns its answer. The
/// interpreter's lock is given up meanwhile, as upstream gives it up in host calls.
#[pyfunction]
fn call<'py>(py: Python<'py>, message: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    let turn = TURN.with_borrow(Clone::clone).ok_or_else(|| {
        PyRuntimeError::new_err(
            "influxdb3_local was used outside of its call: from a thread the plugin \
             started, or after the call ended",
        )
    })?;
    let message = message.to_vec();
    let answer = py.detach(|| {
        let mut turn = turn.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(stop) = &turn.stopped {
            return Err(stop.clone());
        }
        let Turn {
            state,
            runtime,
            stopped,
        } = &mut *turn;
        let answer = runtime.block_on(state.door(message));
        if let Err(stop) = &answer {
            *stopped = Some(stop.clone());
        }
        answer
    });
    match answer {
        Ok(answer) => Ok(PyBytes::new(py, &answer)),
        Err(stop) => Err(Stopped::new_err(stop.to_string())),
    }
}

/// The module `_host`, for `sys.modules`.
pub(crate) fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let module = PyModule::new(py, "_host")?;
    module.add_function(wrap_pyfunction!(call, &module)?)?;
    module.add("Stopped", py.get_type::<Stopped>())?;
    Ok(module)
}
