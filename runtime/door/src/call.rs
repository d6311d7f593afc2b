//! The call the guest takes, and the outcome it hands back.

use crate::marshal::Marshal;
use crate::wire::{Malformed, Read, Reader};
use sluice_plugin_api::{HttpResponse, PluginCall, PluginSource, TriggerArguments};

/// Kinds of call, the first item of the message (`door.py`'s `LOAD`, `WRITES`, ...).
const LOAD: i64 = 0;
const WRITES: i64 = 1;
const SCHEDULE: i64 = 2;
const REQUEST: i64 = 3;

/// Loading `source`: `(0, ("file", name, code, compiled))`, `compiled` the code compiled
/// before (`code_cache.rs`) as `bytes` or `None`; or `(0, ("package", name))`.
pub fn encode_load(source: &PluginSource, compiled: Option<&[u8]>) -> Vec<u8> {
    let mut m = Marshal::default();
    m.tuple(2).int(LOAD);
    match source {
        PluginSource::File { name, code } => {
            m.tuple(4).str("file").str(name).str(code);
            m.opt(compiled, |m, compiled| {
                m.bytes(compiled);
            });
        }
        PluginSource::Package(name) => {
            m.tuple(2).str("package").str(name);
        }
    }
    m.finish()
}

/// `call` as a tuple: its kind, its arguments (`None` or a list of pairs), then for writes
/// a list of batches `(table, rows, columns)`, for a schedule the nanoseconds, for a
/// request the method, the path, the query's pairs, the headers' pairs and the body.
pub fn encode_call(call: &PluginCall) -> Vec<u8> {
    let mut m = Marshal::default();
    let args = |m: &mut Marshal, args: &TriggerArguments| {
        m.opt(args.as_ref(), |m, args| {
            m.pairs(args);
        });
    };
    match call {
        PluginCall::Writes { batches, args: a } => {
            m.tuple(3).int(WRITES);
            args(&mut m, a);
            m.list(batches.len());
            for batch in batches.iter() {
                m.tuple(3)
                    .str(&batch.table_name)
                    .int(i64::from(batch.row_count))
                    .list(batch.columns.len());
                for column in &batch.columns {
                    m.column(column);
                }
            }
        }
        PluginCall::Schedule {
            call_time_ns,
            args: a,
        } => {
            m.tuple(3).int(SCHEDULE);
            args(&mut m, a);
            m.int(*call_time_ns);
        }
        PluginCall::Request { request, args: a } => {
            m.tuple(7).int(REQUEST);
            args(&mut m, a);
            m.str(&request.method)
                .str(&request.path)
                .pairs(&request.query)
                .pairs(&request.headers)
                .bytes(&request.body);
        }
    }
    m.finish()
}

/// How a turn ended, as the guest said: `u8` 0 with what the turn made ([`Outcome::call`],
/// [`Outcome::load`]), or `u8` 1 with `str` the plugin's error.
#[derive(Debug, PartialEq)]
pub enum Outcome<T> {
    /// The turn ended well, with what it made.
    Done(T),
    /// The plugin failed: its error.
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
    pub fn call(message: &[u8], expects_response: bool) -> Read<Self> {
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
    pub fn load(message: &[u8]) -> Read<Self> {
        Self::read(message, |r| r.opt(|r| Ok(r.bytes()?.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marshal::loaded;
    use sluice_plugin_api::HttpRequest;

    #[test]
    fn a_request_is_one_tuple() {
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
        assert_eq!(
            loaded(&encode_call(&call)),
            "(3, None, 'POST', 'hook', [('a', '1')], [], b'hi')"
        );
        let call = PluginCall::Schedule {
            call_time_ns: 1_700_000_000_000_000_000,
            args: Some(vec![("k".into(), "v".into())]),
        };
        assert_eq!(
            loaded(&encode_call(&call)),
            "(2, [('k', 'v')], 1700000000000000000)"
        );
    }

    /// A `str` or `bytes` field of a guest's message: its u32 length, then it.
    fn field(value: &[u8]) -> Vec<u8> {
        let len = u32::try_from(value.len()).expect("short");
        [&len.to_le_bytes()[..], value].concat()
    }

    #[test]
    fn outcomes_are_read_and_checked() {
        // Done; status 201 as a u16; a list of one header pair; the body.
        let done = [
            &[0, 201, 0, 1, 0, 0, 0][..],
            &field(b"x"),
            &field(b"y"),
            &field(b"ok"),
        ]
        .concat();
        assert_eq!(
            Outcome::call(&done, true).expect("readable"),
            Outcome::Done(Some(HttpResponse {
                status: 201,
                headers: vec![("x".into(), "y".into())],
                body: b"ok".to_vec(),
            }))
        );
        let failed = [&[1][..], &field(b"ValueError: no")].concat();
        assert_eq!(
            Outcome::call(&failed, false).expect("readable"),
            Outcome::Failed("ValueError: no".into())
        );
        assert!(Outcome::call(&[7], false).is_err());
        assert!(Outcome::call(&[0, 1], false).is_err());
    }

    #[test]
    fn a_load_hands_over_its_compiled_code_or_nothing() {
        let compiled = [&[0, 1][..], &field(b"code")].concat();
        assert_eq!(
            Outcome::load(&compiled).expect("readable"),
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
    fn a_load_is_one_tuple_carrying_the_code_compiled_before() {
        let source = PluginSource::File {
            name: "a.py".into(),
            code: "x = 1".into(),
        };
        assert_eq!(
            loaded(&encode_load(&source, Some(b"compiled"))),
            "(0, ('file', 'a.py', 'x = 1', b'compiled'))"
        );
        assert_eq!(
            loaded(&encode_load(&PluginSource::Package("pkg".into()), None)),
            "(0, ('package', 'pkg'))"
        );
    }
}
