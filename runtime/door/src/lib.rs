//! The door between Sluice's Python layer and the host: the protocol of messages that
//! carries a call to the plugin, the plugin's host calls, and the call's outcome, and the
//! host's side of it for one call ([`CallState`]).
//!
//! Both executors speak it. In the WebAssembly sandbox the door is the runtime's one host
//! import (`sluice:runtime/door.call` in `guest-sdk/wit/runtime.wit`); in the pyo3 runtime
//! it is the builtin module `_host`. Either way the Python layer
//! (`guest-sdk/python/sluice_plugin_runtime/door.py`) is the same, and every host call is
//! checked and counted here, once.
//!
//! A call runs as one turn of the Python layer: the guest asks for the call
//! ([`Op::TakeCall`]), runs it, makes host calls on the way (one message each, answered
//! at once), and hands its outcome over ([`Op::Finish`]). Every message from the guest starts
//! with its [`Op`] byte and is encoded as `wire.rs` says. The call, and the answer to each
//! question, is one Python value in `marshal`'s format (`marshal.rs`), which the guest loads
//! in one C call; a question's answer is `(refusal, value)`, `refusal` `None` or why the
//! host refused. A message that asks nothing (a log line, a write, the outcome) is
//! answered with no bytes.
//!
//! The guest is untrusted: a message the protocol does not allow stops the call
//! ([`Stop`]), and so does a host call past one of the call's limits.

mod call;
mod call_state;
mod host_calls;
mod marshal;
mod placeholders;
mod wire;

pub use call::{Outcome, encode_call, encode_load};
pub use call_state::{CallState, cut_line};
pub use wire::{Malformed, Read};

/// Why a call must stop: the guest sent a message the protocol does not allow, or a host
/// call went past a limit of the call. The message says which.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Stop(String);

impl Stop {
    /// Stops the call for `why`.
    pub fn new(why: impl Into<String>) -> Self {
        Self(why.into())
    }
}

impl From<wire::Malformed> for Stop {
    fn from(malformed: wire::Malformed) -> Self {
        Self(malformed.to_string())
    }
}

/// What a message from the guest asks for: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The call to run (answered with [`encode_call`]'s or [`encode_load`]'s tuple).
    TakeCall = 0,
    /// The call's outcome ([`Outcome`]); answered with nothing.
    Finish = 1,
    /// `u8` level (0 info, 1 warn, 2 error), `str` message.
    Log = 2,
    /// `str` SQL, pairs of parameters, `opt<str>` database. Answer: `(rows, columns)`,
    /// each column as [`marshal::Marshal::column`] writes it.
    Query = 3,
    /// `opt<str>` database, `str` line protocol, `bytes` floats, `bytes` timestamps (see
    /// `placeholders.rs`). Answered with nothing.
    Write = 4,
    /// `opt<str>` database, `str` line protocol, `u8` no-sync. Answer: `None`.
    WriteSync = 5,
    /// `str` key, `u8` global. Answer: `bytes` or `None`.
    CacheGet = 6,
    /// `str` key, `bytes` value, `opt<f64>` seconds to live, `u8` global. Answer: `None`.
    CachePut = 7,
    /// `str` key, `u8` global. Answer: `True` if it was there.
    CacheDelete = 8,
    /// `str` scheme, `str` host, `u16` port. Answer: `None`.
    HttpAllowed = 9,
    /// `str` scheme, `str` host, `u16` port, `str` method, `str` target, pairs of
    /// headers, `bytes` body, `opt<f64>` seconds of time-out. Answer: `(status, reason,
    /// headers, body)`; its refusal is `(kind, message)`, the kind of failure 0 refused,
    /// 1 timed out, 2 too large, 3 too many or 4 failed.
    HttpSend = 10,
}

impl Op {
    fn of(byte: u8) -> Option<Self> {
        use Op::*;
        [
            TakeCall,
            Finish,
            Log,
            Query,
            Write,
            WriteSync,
            CacheGet,
            CachePut,
            CacheDelete,
            HttpAllowed,
            HttpSend,
        ]
        .into_iter()
        .find(|op| *op as u8 == byte)
    }
}
