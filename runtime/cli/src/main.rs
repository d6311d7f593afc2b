//! `sluice`: the Sluice command line. Only glue lives here: each subcommand is a file in
//! `commands/`, and the work happens in the library crates.

use clap::Parser;
use std::process::ExitCode;

mod commands;

/// Sluice: a time-series database whose processing engine runs every plugin inside a
/// WebAssembly sandbox.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks the definitions of every command and flag only when one is used;
    /// this checks them all.
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
