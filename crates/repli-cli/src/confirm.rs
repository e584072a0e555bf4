//! Asking before an action that undoes a kit: what will happen, then « oui » typed at the
//! terminal, or `--yes` for scripts. Without a terminal and without `--yes`, nothing is done.

use std::io::{BufRead, IsTerminal, Read, Write};

use repli_core::Destructive;

/// Asks for confirmation of `what` (about `subject`); `yes` answers for a script.
pub fn confirm(what: Destructive, subject: &str, yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "{} ({subject}) Rien n'a été fait : relancez avec --yes pour confirmer sans question.",
            what.title_fr()
        );
    }
    let mut err = std::io::stderr().lock();
    writeln!(err, "{} ({subject})", what.title_fr())?;
    for c in what.consequences_fr() {
        writeln!(err, "  - {c}")?;
    }
    write!(err, "Tapez « oui » pour confirmer : ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::BufReader::new(stdin.lock().take(64)).read_line(&mut answer)?;
    if answer.trim().eq_ignore_ascii_case("oui") { Ok(()) } else { anyhow::bail!("Abandon : rien n'a été fait.") }
}
