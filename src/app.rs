//! The edge: dispatches a parsed command to its module in [`crate::cmd`]. Which exit status
//! an outcome or an error deserves is [`crate::exit`]'s; `main` only prints what comes back.

use crate::cli::{BenchCommand, Cli, Command, DbCommand};
use crate::cmd;
use crate::config::Connection;
use crate::exit::Exit;

/// Runs one command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<Exit> {
    // The commands that reach no server need no valid connection settings.
    match &cli.command {
        Command::Strategies(args) => return cmd::strategies::run(args),
        Command::Completions { shell } => return cmd::docs::completions(*shell),
        Command::Man => return cmd::docs::man(),
        // `race` reaches someone else's service and database, never booking-cli's own.
        Command::Race(args) => return cmd::race::run(args, cli.verbose).await,
        _ => {}
    }
    let connection = Connection::from_args(&cli.connection).map_err(anyhow::Error::new)?;
    match cli.command {
        Command::Db(DbCommand::Reset(args)) => cmd::reset::run(&connection, &args).await,
        Command::Db(DbCommand::Drop(args)) => cmd::reset::drop(&connection, &args).await,
        Command::Book(args) => cmd::book::run(&connection, &args).await,
        Command::Stress(args) => {
            cmd::stress::run(&connection, &args, cli.verbose, cli.threads).await
        }
        Command::Bench(BenchCommand::Lock(args)) => cmd::bench::run(&connection, &args).await,
        Command::Interleave(args) => cmd::interleave::run(&connection, &args).await,
        Command::Serve(args) => cmd::serve::run(&connection, &args).await,
        Command::Strategies(_) | Command::Completions { .. } | Command::Man | Command::Race(_) => {
            unreachable!("answered above, without a connection")
        }
    }
}
