//! Line-protocol parsing throughput on one core.
//!
//! `cargo bench -p sluice-benches --bench line_protocol`
//!
//! 10,000 lines of 3 tags, 3 fields (float, integer, string) and a timestamp, parsed
//! into owned rows; then grouped into the table batches WAL plugins receive.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_engine::batches::table_batches;
use sluice_lp::{Precision, parse};

fn body(lines: usize) -> String {
    (0..lines)
        .map(|i| {
            format!(
                "cpu,host=host{},region=region{},cpu=cpu{} usage={},count={}i,state=\"{}\" {}\n",
                i % 100,
                i % 5,
                i % 8,
                i as f64 * 0.5,
                i,
                if i % 2 == 0 { "ok" } else { "busy" },
                1_700_000_000_000_000_000u64 + i as u64
            )
        })
        .collect()
}

fn line_protocol(c: &mut Criterion) {
    let lines = 10_000;
    let input = body(lines);
    let mut group = c.benchmark_group("line_protocol");
    group.throughput(Throughput::Elements(lines as u64));
    group.bench_function("parse_10k_lines", |b| {
        b.iter(|| parse(&input, Precision::Nanosecond, 0))
    });
    let parsed = parse(&input, Precision::Nanosecond, 0);
    group.bench_function("table_batches_10k_rows", |b| {
        b.iter(|| table_batches(&parsed.lines))
    });
    group.finish();
}

criterion_group!(benches, line_protocol);
criterion_main!(benches);
