//! The streams of an instance's files: output counted against the call's bounds, input
//! known to be alive (each holds the instance's [`Written`], whose count of owners says
//! whether a file stream lives).

use super::Written;
use bytes::Bytes;
use std::sync::Arc;
use wasmtime_wasi::p2::{
    DynInputStream, DynOutputStream, InputStream, OutputStream, Pollable, StreamError, StreamResult,
};

/// The guest's answer to a refused write: `ENOSPC`.
fn no_space() -> StreamError {
    StreamError::LastOperationFailed(wasmtime::Error::new(std::io::Error::from_raw_os_error(
        libc::ENOSPC,
    )))
}

/// A file's output stream whose writes count against the call's bounds.
pub(super) struct CountedStream {
    inner: DynOutputStream,
    written: Arc<Written>,
}

impl CountedStream {
    pub(super) fn new(inner: DynOutputStream, written: Arc<Written>) -> Self {
        Self { inner, written }
    }

    fn take(&self, bytes: usize) -> StreamResult<()> {
        if self.written.take(bytes as u64) {
            Ok(())
        } else {
            Err(no_space())
        }
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
