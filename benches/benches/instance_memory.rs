//! Where a warm instance's memory is.
//!
//! `cargo bench -p sluice-benches --bench instance_memory [-- N]`
//!
//! Instantiates N instances of a trivial plugin (default 50), calls each once, and
//! reads `/proc/self/smaps` before, after loading and after the call: the growth of each
//! kind of mapping, per instance. Linux only; `SLUICE_IMAGE_FAULT_AROUND=1` measures with
//! Linux's fault-around for the memory image.

use sluice_benches::{NullHost, Plugins};
use sluice_plugin_api::{Limits, PluginCall};
use sluice_sandbox::{Sandbox, SandboxConfig};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One mapping of `/proc/self/smaps`.
#[derive(Debug, Clone, Default)]
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    name: String,
    rss_kib: u64,
    private_dirty_kib: u64,
    anonymous_kib: u64,
}

impl Mapping {
    /// A mapping of the runtime's memory image: private and writable, of the compiled
    /// artifact or (without an artifact cache) of wasmtime's image `memfd`.
    fn is_image(&self) -> bool {
        self.perms == "rw-p"
            && (self.name.ends_with(".cwasm") || self.name == "/memfd:wasm-memory-image")
    }
}

fn mappings() -> Vec<Mapping> {
    let text = std::fs::read_to_string("/proc/self/smaps").expect("smaps");
    let mut all = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            all.extend(current.take());
            let perms = fields.next().unwrap_or_default().to_string();
            let name = fields.nth(3).unwrap_or_default().to_string();
            current = Some(Mapping {
                start,
                end,
                perms,
                name,
                ..Mapping::default()
            });
            continue;
        }
        let value: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        if let Some(mapping) = current.as_mut() {
            match first {
                "Rss:" => mapping.rss_kib = value,
                "Private_Dirty:" => mapping.private_dirty_kib = value,
                "Anonymous:" => mapping.anonymous_kib = value,
                _ => {}
            }
        }
    }
    all.extend(current);
    all
}

/// Sums of Rss, Private_Dirty and Anonymous by kind of mapping.
fn by_kind(mappings: &[Mapping]) -> BTreeMap<String, (u64, u64, u64, usize)> {
    let mut kinds: BTreeMap<String, (u64, u64, u64, usize)> = BTreeMap::new();
    for m in mappings {
        let size = m.end - m.start;
        let kind = if m.is_image() {
            "memory image (copy-on-write)".to_string()
        } else if m.name.is_empty() && size >= 1 << 30 {
            "anonymous >= 1 GiB (pool reservations)".to_string()
        } else if m.name.is_empty() {
            format!("anonymous < 1 GiB ({})", size_class(size))
        } else if m.name.starts_with('[') {
            m.name.clone()
        } else {
            "files".to_string()
        };
        let entry = kinds.entry(kind).or_default();
        entry.0 += m.rss_kib;
        entry.1 += m.private_dirty_kib;
        entry.2 += m.anonymous_kib;
        entry.3 += 1;
    }
    kinds
}

fn size_class(size: u64) -> &'static str {
    match size {
        0..0x10_0000 => "< 1 MiB",
        0x10_0000..0x400_0000 => "1-64 MiB",
        _ => "64 MiB-1 GiB",
    }
}

fn report(label: &str, before: &[Mapping], after: &[Mapping], n: usize) {
    let before = by_kind(before);
    let after = by_kind(after);
    println!("\n{label} (KiB per instance: rss, private dirty, anonymous; mappings after)");
    for (kind, (rss, dirty, anon, count)) in &after {
        let (rss0, dirty0, anon0, _) = before.get(kind).copied().unwrap_or_default();
        let per = |a: u64, b: u64| (a as f64 - b as f64) / n as f64;
        println!(
            "  {kind:50} {:9.1} {:9.1} {:9.1}   ({count})",
            per(*rss, rss0),
            per(*dirty, dirty0),
            per(*anon, anon0)
        );
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(50);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let plugins = Plugins::new().expect("plugins");
    let limits = Limits::default();
    let host = Arc::new(NullHost);
    let trivial = plugins.get("trivial.py");
    // One instance first, so that what every instance shares is counted before.
    let first = runtime
        .block_on(sandbox.instantiate(&trivial, &limits))
        .expect("instance");
    drop(first);
    let before = mappings();
    let mut instances = Vec::new();
    for _ in 0..n {
        instances.push(
            runtime
                .block_on(sandbox.instantiate(&trivial, &limits))
                .expect("instance"),
        );
    }
    let loaded = mappings();
    for instance in &mut instances {
        runtime
            .block_on(instance.call(
                PluginCall::Schedule {
                    call_time_ns: 1_700_000_000_000_000_000,
                    args: None,
                },
                &limits,
                host.clone(),
            ))
            .expect("call");
    }
    let called = mappings();
    report("instantiated and loaded", &before, &loaded, n);
    report("one trivial call", &loaded, &called, n);
    report("in all", &before, &called, n);
    if let Some(image) = called.iter().find(|m| m.is_image() && m.anonymous_kib > 0) {
        own_pages(image);
    }
    drop(instances);
}

/// Prints where in one instance's linear memory its own (copied) pages are, per MiB.
fn own_pages(image: &Mapping) {
    use std::io::{Read, Seek, SeekFrom};
    const PAGE: u64 = 4096;
    let mut pagemap = std::fs::File::open("/proc/self/pagemap").expect("pagemap");
    let pages = (image.end - image.start) / PAGE;
    pagemap
        .seek(SeekFrom::Start(image.start / PAGE * 8))
        .expect("seek");
    let mut raw = vec![0u8; pages as usize * 8];
    pagemap.read_exact(&mut raw).expect("read");
    // Per MiB of the image: pages mapped from the image (read, shared) and pages of the
    // instance's own (written, copied).
    let mut per_mib = BTreeMap::<u64, (u64, u64)>::new();
    for (index, entry) in raw.chunks_exact(8).enumerate() {
        let entry = u64::from_le_bytes(entry.try_into().unwrap_or_default());
        let (present, file) = (entry >> 63 & 1 == 1, entry >> 61 & 1 == 1);
        let counts = per_mib.entry((index as u64 * PAGE) >> 20).or_default();
        match (present, file) {
            (true, true) => counts.0 += 1,
            (true, false) => counts.1 += 1,
            _ => {}
        }
    }
    println!("\none instance's image, per MiB: pages read (shared), pages written (own)");
    for (mib, (shared, own)) in per_mib {
        if shared + own > 0 {
            println!("  {mib:3} MiB: {shared:4} {own:4}");
        }
    }
}
