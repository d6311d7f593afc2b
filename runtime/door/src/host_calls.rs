//! The host's side of the door: each message from the guest read, checked, served, and
//! answered.

use crate::call_state::{CallState, Outgoing};
use crate::marshal::Marshal;
use crate::placeholders::{FillError, fill_in};
use crate::wire::{Malformed, Reader};
use crate::{Op, Stop};
use sluice_plugin_api::{LogLevel, OutboundFailureKind};
use std::sync::Arc;
use std::time::Duration;

impl CallState {
    /// Serves one message from the guest and returns the answer.
    ///
    /// # Errors
    ///
    /// A message the protocol does not allow, or a host call past a limit: the call must
    /// stop (in the sandbox, a trap).
    pub async fn door(&mut self, message: Vec<u8>) -> Result<Vec<u8>, Stop> {
        let mut r = Reader::new(&message);
        let op = r.u8().ok().and_then(Op::of);
        let op = op.ok_or(Stop::from(Malformed("an unknown operation")))?;
        let mut answer = Marshal::default();
        match op {
            Op::TakeCall => {
                r.end()?;
                let Some(call) = self.message.take() else {
                    return Err(Stop::new("the runtime asked twice for its call"));
                };
                return Ok(call);
            }
            Op::Finish => {
                if self.outcome.is_some() {
                    return Err(Stop::new("the runtime ended its call twice"));
                }
                self.outcome = Some(message[1..].to_vec());
            }
            Op::Log => {
                let level = match r.u8()? {
                    0 => LogLevel::Info,
                    1 => LogLevel::Warn,
                    2 => LogLevel::Error,
                    _ => return Err(Malformed("an unknown log level").into()),
                };
                let text = r.str()?;
                r.end()?;
                let text = self.count_log_line(text)?;
                self.services()?.log(level, &text);
            }
            Op::Query => {
                let sql = r.str()?;
                let params = r.pairs()?;
                let database = r.opt(|r| r.str())?;
                r.end()?;
                let services = Arc::clone(self.services()?);
                match services.query(sql, &params, database).await {
                    Ok(result) => {
                        answer
                            .ok()
                            .tuple(2)
                            .int(i64::from(result.row_count))
                            .list(result.columns.len());
                        for column in &result.columns {
                            answer.column(column);
                        }
                    }
                    Err(error) => {
                        answer.refusal(&error);
                    }
                }
            }
            Op::Write => {
                let database = r.opt(|r| r.str())?;
                let line_protocol = r.string()?;
                let floats = r.bytes()?;
                let timestamps = r.bytes()?;
                r.end()?;
                self.write(database, line_protocol, floats, timestamps)?;
            }
            Op::WriteSync => {
                let database = r.opt(|r| r.str())?;
                let line_protocol = r.string()?;
                let no_sync = r.bool()?;
                r.end()?;
                self.count_written(line_protocol.len())?;
                let services = Arc::clone(self.services()?);
                let written = services.write_sync(database, line_protocol, no_sync).await;
                answer.result(written);
            }
            Op::CacheGet => {
                let key = r.str()?;
                let global = r.bool()?;
                r.end()?;
                let value = self.services()?.cache_get(key, global);
                answer.ok().opt(value, |m, value| {
                    m.bytes(&value);
                });
            }
            Op::CachePut => {
                let key = r.str()?;
                let value = r.bytes()?.to_vec();
                let ttl = r.opt(|r| r.f64())?;
                let global = r.bool()?;
                r.end()?;
                let stored = match ttl.map(Duration::try_from_secs_f64).transpose() {
                    Ok(ttl) => self.services()?.cache_put(key, value, ttl, global),
                    Err(e) => Err(format!("cannot convert float seconds to Duration: {e}")),
                };
                answer.result(stored);
            }
            Op::CacheDelete => {
                let key = r.str()?;
                let global = r.bool()?;
                r.end()?;
                let deleted = self.services()?.cache_delete(key, global);
                answer.ok().bool(deleted);
            }
            Op::HttpAllowed => {
                let (scheme, host, port) = (r.str()?, r.str()?, r.u16()?);
                r.end()?;
                let allowed = self.services()?.http_allowed(scheme, host, port);
                answer.result(allowed);
            }
            Op::HttpSend => {
                let request = Outgoing {
                    scheme: r.string()?,
                    host: r.string()?,
                    port: r.u16()?,
                    method: r.string()?,
                    target: r.string()?,
                    headers: r.pairs()?,
                    body: r.bytes()?.to_vec(),
                    timeout_seconds: r.opt(|r| r.f64())?,
                };
                r.end()?;
                let services = Arc::clone(self.services()?);
                let sent = match self.outbound(request) {
                    Ok(request) => services.http_send(request).await,
                    Err(failure) => Err(failure),
                };
                match sent {
                    Ok(response) => {
                        answer
                            .ok()
                            .tuple(4)
                            .int(i64::from(response.status))
                            .str(&response.reason)
                            .pairs(&response.headers)
                            .bytes(&response.body);
                    }
                    Err(failure) => {
                        let kind = match failure.kind {
                            OutboundFailureKind::Refused => 0,
                            OutboundFailureKind::TimedOut => 1,
                            OutboundFailureKind::TooLarge => 2,
                            OutboundFailureKind::TooMany => 3,
                            OutboundFailureKind::Failed => 4,
                        };
                        answer
                            .tuple(2)
                            .tuple(2)
                            .int(kind)
                            .str(&failure.message)
                            .none();
                    }
                }
            }
        }
        Ok(answer.finish())
    }

    /// Queues line protocol for when the call succeeds, its placeholders filled in, within
    /// what the call may still write (which bounds the host memory it takes).
    fn write(
        &mut self,
        database: Option<&str>,
        line_protocol: String,
        floats: &[u8],
        timestamps: &[u8],
    ) -> Result<(), Stop> {
        let allowed = self.limits.bytes_written.saturating_sub(self.bytes_written);
        let allowed = usize::try_from(allowed).unwrap_or(usize::MAX);
        let line_protocol = match fill_in(line_protocol, floats, timestamps, allowed) {
            Ok(filled) => filled,
            Err(FillError::TooLong) => {
                // Counting past what is allowed stops the call at the write limit.
                self.count_written(allowed.saturating_add(1))?;
                return Err(Stop::new(
                    "write: the line protocol is over the write limit",
                ));
            }
            Err(FillError::Mismatch(message)) => return Err(Stop::new(message)),
        };
        self.count_written(line_protocol.len())?;
        let queued = self.services()?.write(database, line_protocol);
        if let Err(refusal) = queued {
            self.refused = Some(refusal.clone());
            return Err(Stop::new(refusal));
        }
        Ok(())
    }
}

/// An answer to a question is a tuple `(refusal, value)`: `refusal` is `None` when the host
/// answered, else why it refused (and `value` is `None`).
impl Marshal {
    /// `(None, value)`: the caller writes the value next.
    fn ok(&mut self) -> &mut Self {
        self.tuple(2).none()
    }

    /// `(error, None)`.
    fn refusal(&mut self, error: &str) -> &mut Self {
        self.tuple(2).str(error).none()
    }

    /// `(None, None)`, or `(error, None)`.
    fn result(&mut self, result: Result<(), String>) -> &mut Self {
        match result {
            Ok(()) => self.ok().none(),
            Err(error) => self.refusal(&error),
        }
    }
}
