//! The call the guest takes, and the outcome it hands back.

use super::wire::{Malformed, Read, Reader, Writer};
use sluice_plugin_api::{HttpResponse, PluginCall, PluginSource, TriggerArguments};

/// Kinds of call, the first byte of the message.
const LOAD: u8 = 0;
const WRITES: u8 = 1;
const SCHEDULE: u8 = 2;
const REQUEST: u8 = 3;

/// Loading `source`: `u8` 0, then `u8` 0 with `str` name, `str` code and `opt<bytes>` the
/// code compiled before (`code_cache.rs`) for a file, or `u8` 1 with `str` name for a
/// package.
pub(crate) fn encode_load(source: &PluginSource, compiled: Option<&[u8]>) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(LOAD);
    match source {
        PluginSource::File { name, code } => {
            w.u8(0).str(name).str(code);
            w.opt(compiled, |w, compiled| {
                w.bytes(compiled);
            });
        }
        PluginSource::Package(name) => {
            w.u8(1).str(name);
        }
    }
    w.finish()
}

/// `call`: its kind, `opt<pairs>` arguments, then for writes a list of batches (`str`
/// table, `u32` rows, a list of columns), for a schedule `i64` nanoseconds, for a request
/// `str` method, `str` path, pairs of query parameters, pairs of headers and `bytes` body.
pub(crate) fn encode_call(call: &PluginCall) -> Vec<u8> {
    let mut w = Writer::default();
    let args = |w: &mut Writer, args: &TriggerArguments| {
        w.opt(args.as_ref(), |w, args| {
            w.pairs(args);
        });
    };
    match call {
        PluginCall::Writes { batches, args: a } => {
            w.u8(WRITES);
            args(&mut w, a);
            w.list(batches.iter(), |w, batch| {
                w.str(&batch.table_name).u32(batch.row_count);
                w.list(batch.columns.iter(), |w, column| {
                    w.column(column);
                });
            });
        }
        PluginCall::Schedule {
            call_time_ns,
            args: a,
        } => {
            w.u8(SCHEDULE);
            args(&mut w, a);
            w.i64(*call_time_ns);
        }
        PluginCall::Request { request, args: a } => {
            w.u8(REQUEST);
            args(&mut w, a);
            w.str(&request.method)
                .str(&request.path)
                .pairs(&request.query)
                .pairs(&request.headers)
                .bytes(&request.body);
        }
    }
    w.finish()
}

/// How a turn ended, as the guest said: `u8` 0 with what the turn made ([`Outcome::call`],
/// [`Outcome::load`]), or `u8` 1 with `str` the plugin's error.
#[derive(Debug, PartialEq)]
pub(crate) enum Outcome<T> {
    Done(T),
    Failed(String),
}

impl<T> Outcome<T> {
    /// Reads an outcome whose success holds what `done` reads.
    fn read(message: &[u8], done: impl FnOnce(&mut Reader) -> Read<T>) -> Read<Self> {
        let mut r = Reader::new(message);
        let outcome = match r.u8()? {
            0 => Self::Done(done(&mut r)?),
            1 => Self::Failed(r.string()?),
            _ => return Err(Malformed("an outcome that is neither done nor failed")),
        };
        r.end()?;
        Ok(outcome)
    }
}

impl Outcome<Option<HttpResponse>> {
    /// Reads the outcome of a call that `expects_response` (a request: `u16` status, pairs
    /// of headers and `bytes` body) or not (nothing).
    pub(crate) fn call(message: &[u8], expects_response: bool) -> Read<Self> {
        Self::read(message, |r| {
            if !expects_response {
                return Ok(None);
            }
            Ok(Some(HttpResponse {
                status: r.u16()?,
                headers: r.pairs()?,
                body: r.bytes()?.to_vec(),
            }))
        })
    }
}

impl Outcome<Option<Vec<u8>>> {
    /// Reads the outcome of a load: `opt<bytes>`, the code a file plugin was compiled to,
    /// marshalled, when the guest compiled it.
    pub(crate) fn load(message: &[u8]) -> Read<Self> {
        Self::read(message, |r| r.opt(|r| Ok(r.bytes()?.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_plugin_api::HttpRequest;

    #[test]
    fn a_request_is_encoded_field_by_field() {
        let call = PluginCall::Request {
            request: HttpRequest {
                method: "POST".into(),
                path: "hook".into(),
                query: vec![("a".into(), "1".into())],
                headers: vec![],
                body: b"hi".to_vec(),
            },
            args: None,
        };
        let bytes = encode_call(&call);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().expect("readable"), REQUEST);
        assert_eq!(r.opt(|r| r.pairs()).expect("readable"), None);
        assert_eq!(r.str().expect("readable"), "POST");
        assert_eq!(r.str().expect("readable"), "hook");
        assert_eq!(r.pairs().expect("readable"), vec![("a".into(), "1".into())]);
        assert!(r.pairs().expect("readable").is_empty());
        assert_eq!(r.bytes().expect("readable"), b"hi");
        r.end().expect("readable");
    }

    #[test]
    fn outcomes_are_read_and_checked() {
        let mut w = Writer::default();
        w.u8(0)
            .u16(201)
            .pairs(&[("x".into(), "y".into())])
            .bytes(b"ok");
        let done = Outcome::call(&w.finish(), true).expect("readable");
        assert_eq!(
            done,
            Outcome::Done(Some(HttpResponse {
                status: 201,
                headers: vec![("x".into(), "y".into())],
                body: b"ok".to_vec(),
            }))
        );
        let mut w = Writer::default();
        w.u8(1).str("ValueError: no");
        assert_eq!(
            Outcome::call(&w.finish(), false).expect("readable"),
            Outcome::Failed("ValueError: no".into())
        );
        assert!(Outcome::call(&[7], false).is_err());
        assert!(Outcome::call(&[0, 1], false).is_err());
    }

    #[test]
    fn a_load_hands_over_its_compiled_code_or_nothing() {
        let mut w = Writer::default();
        w.u8(0).opt(Some(b"code"), |w, code| {
            w.bytes(code);
        });
        assert_eq!(
            Outcome::load(&w.finish()).expect("readable"),
            Outcome::Done(Some(b"code".to_vec()))
        );
        assert_eq!(
            Outcome::load(&[0, 0]).expect("readable"),
            Outcome::Done(None)
        );
        // A length past the message's end.
        assert!(Outcome::load(&[0, 1, 9, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn a_file_load_carries_the_code_compiled_before() {
        let source = PluginSource::File {
            name: "a.py".into(),
            code: "x = 1".into(),
        };
        let bytes = encode_load(&source, Some(b"compiled"));
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8().expect("readable"), LOAD);
        assert_eq!(r.u8().expect("readable"), 0);
        assert_eq!(r.str().expect("readable"), "a.py");
        assert_eq!(r.str().expect("readable"), "x = 1");
        assert_eq!(
            r.opt(|r| r.bytes()).expect("readable"),
            Some(&b"compiled"[..])
        );
        r.end().expect("readable");
    }
}
