//! `booking-cli`: load `.env`, parse, run, print the error, exit with the documented status.

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use booking_cli::app;
use booking_cli::cli::Cli;
use booking_cli::config::Connection;
use booking_cli::exit::{self, Exit};

fn main() -> ExitCode {
    // A missing .env is normal; one that cannot be read is worth a word.
    if let Err(error) = dotenvy::dotenv()
        && !error.not_found()
    {
        eprintln!("warning: ignoring .env: {error}");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    booking_cli::logging::init(cli.verbose);
    let secrets = Connection::from_args(&cli.connection)
        .map(|c| c.secrets())
        .unwrap_or_default();

    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = cli.threads.or(cli.command.default_threads()) {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: failed to start the async runtime: {error}");
            return Exit::RuntimeError.into();
        }
    };
    match runtime.block_on(app::run(cli)) {
        Ok(exit) => exit.into(),
        Err(error) => {
            eprintln!("error: {}", exit::error_line(&error, &secrets));
            Exit::for_error(&error).into()
        }
    }
}

/// Help and version go to stdout with status 0. A usage error is one line on stderr — clap's
/// message without its usage block — and status 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return Exit::Success.into();
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = error.print();
        return Exit::BadInput.into();
    }
    let rendered = error.render().to_string();
    let message: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    eprintln!("{} (see --help)", message.join(" "));
    Exit::BadInput.into()
}
