//! The durable playbook engine.

pub mod context;
pub mod load;
