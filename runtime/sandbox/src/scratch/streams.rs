//! The streams of an instance's files: output counted against the call's bounds, input
//! known to be alive (each holds the instance's [`Written`], whose count of owners says
//! whether a file stream lives).

use super::{PAGE, Written};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

/// The error of a refused write: `ENOSPC`.
fn no_space() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(std::io::Error::from_raw_os_error(
        libc::ENOSPC,
    )))
}

/// A file's output stream whose writes count against the call's bounds, by the pages
/// of memory they may take: a stream writing at an offset is charged each page it
/// touches once (so a plugin writing one byte a page far apart is charged the pages it
/// holds); one appending, which leaves no holes, its bytes and one page for the first.
pub(super) struct CountedStream {
    inner: DynOutputStream,
    written: Arc<Written>,
    /// Where its next write lands; `None` for a stream appending at the end.
    position: Option<u64>,
    /// The pages below this one (a page number) were charged to it already; for an
    /// appending stream, more than zero once its first page was.
    charged_until: u64,
}

impl CountedStream {
    /// `inner`, writing at `position` (`None`: appending).
    pub(super) fn new(
        inner: DynOutputStream,
        written: Arc<Written>,
        position: Option<u64>,
    ) -> Self {
        Self {
            inner,
            written,
            position,
            charged_until: 0,
        }
    }

    /// Charges a write of `len` bytes, or refuses it.
    fn take(&mut self, len: usize) -> StreamResult<()> {
        let len = len as u64;
        if len == 0 {
            return Ok(());
        }
        let (bytes, charged_until, position) = match self.position {
            Some(start) => {
                let end = start.checked_add(len).ok_or_else(no_space)?;
                let first = (start / PAGE).max(self.charged_until);
                let until = (end - 1) / PAGE + 1;
                let pages = until.saturating_sub(first);
                (
                    pages.saturating_mul(PAGE),
                    self.charged_until.max(until),
                    Some(end),
                )
            }
            None if self.charged_until == 0 => (len.saturating_add(PAGE), 1, None),
            None => (len, self.charged_until, None),
        };
        if !self.written.take(bytes) {
            return Err(no_space());
        }
        self.charged_until = charged_until;
        self.position = position;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for CountedStream {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[async_trait::async_trait]
impl OutputStream for CountedStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.inner.check_write()
    }

    async fn blocking_write_and_flush(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.take(bytes.len())?;
        self.inner.blocking_write_and_flush(bytes).await
    }

    fn write_zeroes(&mut self, count: usize) -> StreamResult<()> {
        self.take(count)?;
        self.inner.write_zeroes(count)
    }

    async fn write_ready(&mut self) -> StreamResult<usize> {
        self.inner.write_ready().await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}

/// A file's input stream, unchanged but for the [`Written`] it holds.
pub(super) struct TrackedInput {
    inner: DynInputStream,
    _written: Arc<Written>,
}

impl TrackedInput {
    pub(super) fn new(inner: DynInputStream, written: Arc<Written>) -> Self {
        Self {
            inner,
            _written: written,
        }
    }
}

#[async_trait::async_trait]
impl Pollable for TrackedInput {
    async fn ready(&mut self) {
        self.inner.ready().await;
    }
}

#[async_trait::async_trait]
impl InputStream for TrackedInput {
    fn read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.inner.read(size)
    }

    async fn blocking_read(&mut self, size: usize) -> StreamResult<Bytes> {
        self.inner.blocking_read(size).await
    }

    fn skip(&mut self, count: usize) -> StreamResult<usize> {
        self.inner.skip(count)
    }

    async fn blocking_skip(&mut self, count: usize) -> StreamResult<usize> {
        self.inner.blocking_skip(count).await
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await;
    }
}
