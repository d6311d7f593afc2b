//! The protocol over the runtime's door (`sluice:runtime/door.call` in
//! `guest-sdk/wit/runtime.wit`): how a call reaches the plugin, how the plugin reaches the
//! host, and how the call's outcome comes back, as messages of bytes
//! (encoded as [`wire`] says).
//!
//! A call runs as one `turn` of the runtime, `_sluice_serve()`: the guest asks for the call
//! ([`Op::TakeCall`]), runs it, makes host calls on the way (one message each, answered
//! at once), and hands its outcome over ([`Op::Finish`]). Every message from the guest starts
//! with its [`Op`] byte. The guest's side is `guest-sdk/python/sluice_plugin_runtime/door.py`.
//!
//! The guest is untrusted: a message the protocol does not allow stops the call as a trap,
//! and every host call is checked and counted here as for any plugin.

mod call;
mod host_calls;
pub(crate) mod wire;

pub(crate) use call::{Outcome, encode_call, encode_load};
pub(crate) use wire::Read;

/// What a message from the guest asks for: its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// The call to run (answered with [`encode_call`]'s or [`encode_load`]'s message).
    TakeCall = 0,
    /// The call's outcome ([`Outcome`]); answered with nothing.
    Finish = 1,
    /// `u8` level (0 info, 1 warn, 2 error), `str` message.
    Log = 2,
    /// `str` SQL, pairs of parameters, `opt<str>` database. Answer: 0 then `u32` rows and
    /// a list of columns, or 1 then `str` error.
    Query = 3,
    /// `opt<str>` database, `str` line protocol, `bytes` floats, `bytes` timestamps (see
    /// `placeholders.rs`). Answered with nothing.
    Write = 4,
    /// `opt<str>` database, `str` line protocol, `u8` no-sync. Answer: 0, or 1 then `str`.
    WriteSync = 5,
    /// `str` key, `u8` global. Answer: `opt<bytes>`.
    CacheGet = 6,
    /// `str` key, `bytes` value, `opt<f64>` seconds to live, `u8` global. Answer: 0, or
    /// 1 then `str`.
    CachePut = 7,
    /// `str` key, `u8` global. Answer: `u8`, 1 if it was there.
    CacheDelete = 8,
    /// `str` scheme, `str` host, `u16` port. Answer: 0, or 1 then `str`.
    HttpAllowed = 9,
    /// `str` scheme, `str` host, `u16` port, `str` method, `str` target, pairs of
    /// headers, `bytes` body, `opt<f64>` seconds of time-out. Answer: 0 then `u16` status,
    /// `str` reason, pairs of headers, `bytes` body; or 1 then `u8` failure kind
    /// (0 refused, 1 timed out, 2 too large, 3 too many, 4 failed) and `str` message.
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
