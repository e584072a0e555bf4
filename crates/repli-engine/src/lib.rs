//! The durable playbook engine.

pub mod context;
pub mod exec;
pub mod load;

pub use exec::{Engine, EngineConfig, EngineError, ExportFailed, Host};
pub use load::{EMBEDDED, engine_playbooks};
