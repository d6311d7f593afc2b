//! The subcommands.

use std::process::ExitCode;

mod limits;
mod serve;
mod test;

/// Every subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the database server.
    Serve(serve::ServeArgs),
    /// Run a plugin once and print what it logged, wrote and returned.
    #[command(subcommand)]
    Test(test::TestCommand),
}

/// Runs `command`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(serve) => serve.execute(),
        Command::Test(test) => test.execute(),
    }
}
