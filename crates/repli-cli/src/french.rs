//! The command line's own words in French: help headings, the help and version flags, and
//! argument errors (clap writes them in English). A DGS may type `repli crisis request` on a
//! borrowed laptop: what the tool says back must read as French.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command, CommandFactory, FromArgMatches};

use crate::Cli;

const TEMPLATE: &str = "{before-help}{about-with-newline}\nUtilisation : {usage}\n\n{all-args}{after-help}";

/// `repli`'s command tree with French help on every command.
pub fn command() -> Command {
    french(Cli::command(), true)
}

fn french(cmd: Command, top: bool) -> Command {
    let mut cmd = cmd
        .help_template(TEMPLATE)
        .subcommand_help_heading("Commandes")
        .subcommand_value_name("COMMANDE")
        .disable_help_subcommand(true)
        .disable_help_flag(true)
        .arg(Arg::new("aide").short('h').long("help").action(ArgAction::Help).help("Afficher cette aide"));
    if top {
        cmd = cmd
            .disable_version_flag(true)
            .arg(Arg::new("version").short('V').long("version").action(ArgAction::Version).help("Afficher la version"));
    }
    cmd.mut_subcommands(|sub| french(sub, false))
}

/// Parses the command line, or says in French what is wrong (and exits 2), or prints the help
/// or version asked for (and exits 0).
pub fn parse() -> Result<Cli, ExitCode> {
    parse_from(std::env::args_os())
}

pub fn parse_from<I, T>(args: I) -> Result<Cli, ExitCode>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = command().try_get_matches_from(args).map_err(report)?;
    Cli::from_arg_matches(&matches).map_err(report)
}

fn report(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            eprintln!("erreur : {}\n\nPour l'aide : ajoutez --help à la commande.", message(&e));
            ExitCode::from(2)
        }
    }
}

/// An argument error in one French sentence, with clap's suggestion when it has one.
pub fn message(e: &clap::Error) -> String {
    let get = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        Some(ContextValue::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let arg = get(ContextKind::InvalidArg).unwrap_or_default();
    let value = get(ContextKind::InvalidValue).unwrap_or_default();
    let mut m = match e.kind() {
        ErrorKind::InvalidSubcommand => {
            format!("commande inconnue « {} »", get(ContextKind::InvalidSubcommand).unwrap_or_default())
        }
        ErrorKind::UnknownArgument => format!("option inconnue « {arg} »"),
        ErrorKind::MissingRequiredArgument => format!("il manque {arg}"),
        ErrorKind::MissingSubcommand => "il manque la commande (voir --help)".to_owned(),
        ErrorKind::InvalidValue => format!("valeur « {value} » refusée pour {arg}"),
        ErrorKind::ValueValidation => {
            // Our own parsers explain in French why (an INSEE code, a date…).
            let why = std::error::Error::source(e).map(ToString::to_string).unwrap_or_default();
            format!(
                "valeur « {value} » refusée pour {arg}{}",
                if why.is_empty() { String::new() } else { format!(" : {why}") }
            )
        }
        ErrorKind::ArgumentConflict => format!(
            "{arg} ne peut pas s'employer avec {}",
            get(ContextKind::PriorArg).unwrap_or_else(|| "une autre option donnée".to_owned())
        ),
        ErrorKind::TooManyValues | ErrorKind::WrongNumberOfValues | ErrorKind::TooFewValues => {
            format!("nombre de valeurs incorrect pour {arg}")
        }
        ErrorKind::NoEquals => format!("{arg} attend une valeur après « = »"),
        ErrorKind::InvalidUtf8 => "un argument n'est pas du texte UTF-8".to_owned(),
        _ => "ligne de commande illisible".to_owned(),
    };
    if let Some(s) = get(ContextKind::SuggestedSubcommand) {
        m.push_str(&format!(" ; vouliez-vous dire « {s} » ?"));
    } else if let Some(s) = get(ContextKind::SuggestedArg) {
        m.push_str(&format!(" ; vouliez-vous dire « {s} » ?"));
    }
    if let Some(valid) = get(ContextKind::ValidValue) {
        m.push_str(&format!(" (valeurs possibles : {valid})"));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(args: &[&str]) -> String {
        let e = command().try_get_matches_from(args).unwrap_err();
        message(&e)
    }

    #[test]
    fn argument_errors_read_as_french() {
        assert_eq!(error(&["repli", "crisis", "shw"]), "commande inconnue « shw » ; vouliez-vous dire « show » ?");
        assert!(error(&["repli", "crisis", "request", "--commune", "13005"]).starts_with("il manque --contact-name"));
        assert!(error(&["repli", "crisis", "show", "x", "--jsn"]).starts_with("option inconnue « --jsn »"));
        let bad = error(&[
            "repli",
            "crisis",
            "request",
            "--commune",
            "1300",
            "--contact-name",
            "A",
            "--contact-phone",
            "0612345678",
            "--agents",
            "2",
        ]);
        assert!(bad.starts_with("valeur « 1300 » refusée pour --commune"), "{bad}");
        let list = error(&["repli", "crisis", "list", "--state", "perdu"]);
        assert!(list.contains("valeurs possibles"), "{list}");
    }

    #[test]
    fn help_is_in_french_on_every_command() {
        let mut cmd = command();
        let help = cmd.render_help().to_string();
        assert!(help.contains("Utilisation :") && help.contains("Commandes") && help.contains("Afficher cette aide"));
        let request = command()
            .find_subcommand_mut("crisis")
            .unwrap()
            .find_subcommand_mut("request")
            .unwrap()
            .render_help()
            .to_string();
        assert!(
            request.contains("Demander le kit de repli") && request.contains("Code INSEE de la commune"),
            "{request}"
        );
        assert!(!request.contains("Print help") && !request.contains("Usage:"), "{request}");
        assert!(command().try_get_matches_from(["repli", "help"]).is_err(), "no English `help` subcommand");
    }
}
