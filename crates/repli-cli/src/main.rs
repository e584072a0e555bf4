//! `repli`: the Repli command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    // `repli … | head`: a closed stdout ends the command quietly, as for any Unix tool.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
    let cli = match repli_cli::french::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
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
            eprintln!("erreur : {}", repli_core::text::one_line(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
