//! replid's logging, set up in one place for the binary and for the tests that check what it
//! writes. Third-party crates are capped whatever `RUST_LOG` says: handlebars logs its whole
//! render context at DEBUG (a credential sheet's context holds one-time passwords), and the
//! HTTP and Graph clients can log headers and bodies.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The filter when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// Crates whose records are never written below WARN.
pub const CAPPED: [&str; 11] = [
    "handlebars",
    "graph_rs_sdk",
    "graph_http",
    "graph_oauth",
    "graph_core",
    "reqwest",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "lettre",
];

/// The filter: `spec` (or `RUST_LOG`, or [`DEFAULT_FILTER`]) with [`CAPPED`] at warn on top.
pub fn filter(spec: Option<&str>) -> EnvFilter {
    let base = match spec {
        Some(s) => EnvFilter::try_new(s).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER)),
    };
    CAPPED.iter().fold(base, |f, target| match format!("{target}=warn").parse() {
        Ok(d) => f.add_directive(d),
        Err(_) => f,
    })
}

/// Installs the global subscriber (and the bridge that turns `log` records into events), once
/// per process. `json` for JSON lines; `spec` as in [`filter`].
pub fn init<W>(spec: Option<&str>, json: bool, writer: W) -> Result<(), String>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter(spec)).with_writer(writer).with_ansi(false);
    let done = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    done.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn third_party_crates_stay_at_warn_whatever_rust_log_says() {
        let f = filter(Some("trace,handlebars=trace,reqwest=debug")).to_string();
        assert!(f.contains("handlebars=warn") && !f.contains("handlebars=trace"), "{f}");
        assert!(f.contains("reqwest=warn") && !f.contains("reqwest=debug"), "{f}");
        assert!(f.contains("trace"), "{f}");
        // A spec that does not parse falls back to the default, still capped.
        let f = filter(Some("=== not a filter")).to_string();
        assert!(f.contains("handlebars=warn") && f.contains("info"), "{f}");
    }
}
