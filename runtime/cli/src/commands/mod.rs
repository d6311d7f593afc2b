//! The subcommands.

use std::process::ExitCode;

mod client;
mod database;
mod install;
mod limits;
mod query;
mod serve;
mod show;
mod storage;
mod test;
mod token;
mod trigger;
mod upload;
mod write;

/// Every subcommand.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the database server.
    Serve(Box<serve::ServeArgs>),
    /// Write line protocol to a server.
    Write(write::WriteArgs),
    /// Run a SQL query on a server and print the rows.
    Query(query::QueryArgs),
    /// Create a resource on a server.
    #[command(subcommand)]
    Create(CreateCommand),
    /// Delete a resource on a server.
    #[command(subcommand)]
    Delete(DeleteCommand),
    /// List resources of a server.
    #[command(subcommand)]
    Show(ShowCommand),
    /// Enable a resource on a server.
    #[command(subcommand)]
    Enable(EnableCommand),
    /// Disable a resource on a server.
    #[command(subcommand)]
    Disable(DisableCommand),
    /// Change a resource on a server.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Run a plugin once and print what it logged, wrote and returned.
    #[command(subcommand)]
    Test(Box<test::TestCommand>),
    /// Install something on a server.
    #[command(subcommand)]
    Install(InstallCommand),
}

/// `sluice install …`
#[derive(Debug, clap::Subcommand)]
pub enum InstallCommand {
    /// Install Python packages that plugins import (pure-Python ones only).
    Package(install::InstallPackageArgs),
}

/// `sluice create …`
#[derive(Debug, clap::Subcommand)]
pub enum CreateCommand {
    /// Create a database.
    Database(database::CreateDatabaseArgs),
    /// Create the admin token, or a token for some databases.
    Token(token::CreateTokenArgs),
    /// Create a processing-engine trigger: a plugin and when it runs.
    // Boxed: its many limit flags make it far larger than the other commands.
    Trigger(Box<trigger::CreateTriggerArgs>),
}

/// `sluice delete …`
#[derive(Debug, clap::Subcommand)]
pub enum DeleteCommand {
    /// Delete a database with all its data.
    Database(database::DeleteDatabaseArgs),
    /// Delete a token.
    Token(token::DeleteTokenArgs),
    /// Delete a trigger (an enabled one only with --force).
    Trigger(trigger::DeleteTriggerArgs),
    /// Delete the Parquet files that start-up found nothing refers to (listed by
    /// `sluice show storage-problems`); the server never deletes them on its own.
    UnreferencedFiles(storage::DeleteUnreferencedArgs),
}

/// `sluice enable …`
#[derive(Debug, clap::Subcommand)]
pub enum EnableCommand {
    /// Enable a trigger: it fires again.
    Trigger(trigger::TriggerTarget),
}

/// `sluice disable …`
#[derive(Debug, clap::Subcommand)]
pub enum DisableCommand {
    /// Disable a trigger: it stops firing and its cache is dropped.
    Trigger(trigger::TriggerTarget),
}

/// `sluice update …`
#[derive(Debug, clap::Subcommand)]
pub enum UpdateCommand {
    /// Give a database quotas of its own (admin).
    Database(database::UpdateDatabaseArgs),
    /// Replace the code of a trigger's plugin (it is used from the next call on).
    Trigger(trigger::UpdateTriggerArgs),
}

/// `sluice show …`
#[derive(Debug, clap::Subcommand)]
pub enum ShowCommand {
    /// List the databases.
    Databases(database::ShowDatabasesArgs),
    /// List the tokens (names and permissions; a token's secret is shown only when created).
    Tokens(token::ShowTokensArgs),
    /// List the files of every trigger's plugin.
    Plugins(show::ShowPluginsArgs),
    /// Show a database's system tables: their list, one of them, or a summary of all.
    System(show::ShowSystemArgs),
    /// List what start-up found wrong with the stored data: damaged WAL or Parquet
    /// files, a catalog version lost, files nothing refers to.
    StorageProblems(storage::ShowStorageProblemsArgs),
}

/// Runs `command`.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(serve) => (*serve).execute(),
        Command::Write(write) => write.execute(),
        Command::Query(query) => query.execute(),
        Command::Create(CreateCommand::Database(args)) => args.execute(),
        Command::Delete(DeleteCommand::Database(args)) => args.execute(),
        Command::Show(ShowCommand::Databases(args)) => args.execute(),
        Command::Create(CreateCommand::Token(args)) => args.execute(),
        Command::Delete(DeleteCommand::Token(args)) => args.execute(),
        Command::Show(ShowCommand::Tokens(args)) => args.execute(),
        Command::Create(CreateCommand::Trigger(args)) => args.execute(),
        Command::Delete(DeleteCommand::Trigger(args)) => args.execute(),
        Command::Enable(EnableCommand::Trigger(target)) => target.enable(),
        Command::Disable(DisableCommand::Trigger(target)) => target.disable(),
        Command::Update(UpdateCommand::Trigger(args)) => args.execute(),
        Command::Update(UpdateCommand::Database(args)) => args.execute(),
        Command::Show(ShowCommand::Plugins(args)) => args.execute(),
        Command::Show(ShowCommand::System(args)) => args.execute(),
        Command::Show(ShowCommand::StorageProblems(args)) => args.execute(),
        Command::Delete(DeleteCommand::UnreferencedFiles(args)) => args.execute(),
        Command::Test(test) => (*test).execute(),
        Command::Install(InstallCommand::Package(args)) => args.execute(),
    }
}
