//! The protocol over the runtime's door (`sluice:runtime/door.call` in
//! `guest-sdk/wit/runtime.wit`): how a call reaches the plugin, how the plugin reaches the
//! host, and how the call's outcome comes back, as messages of bytes
//! (encoded as [`wire`] says).
//!
//! A call runs as one `turn` of the runtime, `_sluice_serve()`: the guest asks for the call
//! ([`Op::TakeCall`]), runs it, makes host calls on the way (one message each, answered
//! at once), and hands its outcome over ([`Op::Finish`]). Every message from the guest starts
//! with its [`Op`] byte and is encoded as [`wire`] says. The call, and the answer to each
//! question, is one Python value in `marshal`'s format ([`marshal`]), which the guest loads
//! in one C call; a question's answer is `(refusal, value)`, `refusal` `None` or why the
//! host refused. A message that asks nothing (a log line, a write, the outcome) is
//! answered with no bytes. The guest's side is
//! `guest-sdk/python/sluice_plugin_runtime/door.py`.
//!
//! The guest is untrusted: a message the protocol does not allow stops the call as a trap,
//! and every host call is checked and counted here as for any plugin.

mod call;
mod host_calls;
mod marshal;
pub(crate) mod wire;

pub(crate) use call::{Outcome, encode_call, encode_load};
pub(crate) use wire::Read;

/// What a message from the guest asks for: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
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
