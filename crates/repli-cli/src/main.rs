//! `repli`: the Repli command line.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = repli_cli::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erreur : impossible de démarrer le runtime : {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(repli_cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("erreur : {e:#}");
            ExitCode::FAILURE
        }
    }
}
