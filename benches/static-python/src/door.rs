//! The module's one host import, `host.call(ptr, len, out_ptr_ptr, out_len_ptr)`, which
//! the guest reaches as `_host.call(frame: bytes) -> bytes`: a door for bytes, over which a
//! host interface would be a protocol of messages. Here it answers any request with the
//! store's batch of rows, encoded as the sandbox's WIT world sends a table's columns
//! (numbers as little-endian bytes, strings as distinct values plus one index per row).

use wasmtime::{Caller, Extern};
use wasmtime_wasi::p1::WasiP1Ctx;

/// What a store holds: the guest's WASI state and the frame the door answers with.
pub struct Guest {
    pub wasi: WasiP1Ctx,
    pub batch: std::sync::Arc<Vec<u8>>,
}

/// The door: 0 with the response written, as the module's own host does.
pub fn call(
    mut caller: Caller<'_, Guest>,
    _request: i32,
    _request_len: i32,
    out_ptr: i32,
    out_len: i32,
) -> wasmtime::Result<i32> {
    let batch = std::sync::Arc::clone(&caller.data().batch);
    let Some(Extern::Func(alloc)) = caller.get_export("host_alloc") else {
        wasmtime::bail!("the module exports no host_alloc");
    };
    let len = i32::try_from(batch.len())?;
    let at = alloc.typed::<i32, i32>(&caller)?.call(&mut caller, len)?;
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        wasmtime::bail!("the module exports no memory");
    };
    memory.write(&mut caller, usize::try_from(at)?, &batch)?;
    memory.write(&mut caller, usize::try_from(out_ptr)?, &at.to_le_bytes())?;
    memory.write(&mut caller, usize::try_from(out_len)?, &len.to_le_bytes())?;
    Ok(0)
}

/// Kinds of column in a frame.
const TAG: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const TIME: u8 = 3;

/// `rows` rows as the sandbox bench's `wal_batch`: three tags and a string (distinct
/// values and an index per row), a float, an integer and the time.
pub fn wal_batch(rows: u32) -> Vec<u8> {
    let distinct = |prefix: &str, count: u32| -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    };
    let mut frame = Frame::new(rows);
    frame.strings("host", &distinct("host", 100));
    frame.strings("region", &distinct("region", 5));
    frame.strings("cpu", &distinct("cpu", 8));
    frame.strings("state", &["ok".to_string(), "busy".to_string()]);
    frame.numbers("usage", FLOAT, |i| (f64::from(i) * 0.5).to_le_bytes());
    frame.numbers("count", INT, |i| i64::from(i).to_le_bytes());
    frame.numbers("time", TIME, |i| {
        (1_700_000_000_000_000_000i64 + i64::from(i)).to_le_bytes()
    });
    frame.bytes
}

/// A frame being written: the row count, the column count, then each column's name,
/// kind and values.
struct Frame {
    rows: u32,
    bytes: Vec<u8>,
}

impl Frame {
    fn new(rows: u32) -> Self {
        let mut bytes = rows.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        Self { rows, bytes }
    }

    fn column(&mut self, name: &str, kind: u8) {
        let columns = u32::from_le_bytes(self.bytes[4..8].try_into().expect("4 bytes")) + 1;
        self.bytes[4..8].copy_from_slice(&columns.to_le_bytes());
        self.bytes
            .extend_from_slice(&(name.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(kind);
    }

    /// Row `i` has `values[i % values.len()]`.
    fn strings(&mut self, name: &str, values: &[String]) {
        self.column(name, TAG);
        self.bytes
            .extend_from_slice(&(values.len() as u32).to_le_bytes());
        for value in values {
            self.bytes
                .extend_from_slice(&(value.len() as u32).to_le_bytes());
            self.bytes.extend_from_slice(value.as_bytes());
        }
        for row in 0..self.rows {
            let index = row % values.len() as u32;
            self.bytes.extend_from_slice(&index.to_le_bytes());
        }
    }

    fn numbers(&mut self, name: &str, kind: u8, value: impl Fn(u32) -> [u8; 8]) {
        self.column(name, kind);
        for row in 0..self.rows {
            self.bytes.extend_from_slice(&value(row));
        }
    }
}

/// Python that reads a frame into the `(name, kind, payload, present)` columns of the
/// sandbox's `columns.py`, defined with it; then the bench plugin's `process_writes`,
/// and `_deliver()`, which asks the door for a batch and hands its rows to the plugin.
pub fn guest_setup() -> String {
    let columns = include_str!("../../../guest-sdk/python/sluice_plugin_runtime/columns.py");
    format!("{columns}\n{DELIVER}")
}

const DELIVER: &str = r#"
import _host, struct

_KINDS = {0: "tag", 1: "int", 2: "float", 3: "time"}

def _columns_of(frame):
    view = memoryview(frame)
    rows, count = struct.unpack_from("<II", view, 0)
    at = 8
    columns = []
    for _ in range(count):
        (length,) = struct.unpack_from("<H", view, at)
        name = str(view[at + 2:at + 2 + length], "utf-8")
        kind = _KINDS[view[at + 2 + length]]
        at += 3 + length
        if kind == "tag":
            (distinct,) = struct.unpack_from("<I", view, at)
            at += 4
            values = []
            for _ in range(distinct):
                (length,) = struct.unpack_from("<I", view, at)
                values.append(str(view[at + 4:at + 4 + length], "utf-8"))
                at += 4 + length
            payload = (values, view[at:at + 4 * rows])
            at += 4 * rows
        else:
            payload = view[at:at + 8 * rows]
            at += 8 * rows
        columns.append((name, kind, payload, None))
    return rows, columns

def process_writes(influxdb3_local, table_batches, args=None):
    global _counted
    _counted = sum(len(batch['rows']) for batch in table_batches)

def _deliver(expected):
    rows, columns = _columns_of(_host.call(b"batch"))
    process_writes(None, [{"table_name": "cpu", "rows": rows_from_columns(rows, columns, False)}])
    assert _counted == expected, _counted
"#;
