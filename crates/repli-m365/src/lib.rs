//! Microsoft 365 provisioning for a crisis kit, over graph-rs-sdk.
//!
//! This is the only crate that sees Graph: the engine and the daemon use the [`M365`] trait
//! and the plain types below. [`GraphProvider`] implements it with graph-rs-sdk, one
//! resilience layer of its own (retries, `Retry-After`, `$batch` in groups of 20, paging,
//! bounded concurrency, a time budget per operation) and app-only client-credentials auth.
//! Every operation looks up what exists before creating, so running it again after a crash
//! creates nothing twice.

mod cert;
mod client;
mod dns;
mod export;
mod gate;
mod ops;
mod password;
mod preflight;
mod provision;
mod rfc2136;
mod wire;

pub use cert::ClientCertificate;
pub use client::{Credential, DEFAULT_CONCURRENCY, DEFAULT_SKUS, GraphConfig};
pub use dns::HttpDnsPublisher;
pub use export::CHANNEL_NOTE_FR;
pub use ops::GraphProvider;
pub use password::generate_password;
pub use provision::{Kit, KitSpec, critical_path_calls, provision};
pub use rfc2136::{Rfc2136Config, Rfc2136Dns};

pub use repli_core::m365::{
    Account, AgentSpec, BoxFut, CallStats, CheckStatus, DnsPublisher, DnsRecord, DomainRemoval, DomainState, Error,
    ExportInventory, ExportItem, ExportKind, Fetched, Grant, GraphPace, IsolationCheck, IsolationReport, ItemSink,
    M365, ManualDns, MeetingInfo, MeetingSpec, PreflightCheck, PreflightReport, PreflightSpec, Result, Secret,
    TeamInfo, TeamSpec, WindDown, backup_domain, zone_fragment,
};
