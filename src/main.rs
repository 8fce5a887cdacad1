//! The `popbackup` binary: parse arguments, run, print the error once, exit with its code.

fn main() -> std::process::ExitCode {
    let cli = match popbackup::cli::parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match popbackup::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.reported {
                eprintln!("popbackup: {}", failure.message());
            }
            std::process::ExitCode::from(failure.code)
        }
    }
}
