//! The `popbackup` binary: parse arguments, run, print the error once, exit with its code.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = popbackup::cli::Cli::parse();
    match popbackup::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.reported {
                eprintln!("popbackup: {:#}", failure.error);
            }
            std::process::ExitCode::from(failure.code)
        }
    }
}
