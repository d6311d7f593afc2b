//! The subcommands.

use std::process::ExitCode;

mod limits;
mod test;

/// Every subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a plugin once and print what it logged, wrote and returned.
    #[command(subcommand)]
    Test(test::TestCommand),
}

/// Runs `command`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Test(test) => test.execute(),
    }
}
