//! replid's HTTP API, version 1: the JSON types on the wire ([`api`]) and a typed client
//! ([`Client`]). The CLI, the demo and the end-to-end tests all go through this client, so the
//! API is exercised the way users exercise it.

pub mod api;
mod client;
pub mod problem;

pub use client::{Client, ClientError};
pub use problem::ProblemCode;

/// Path prefix of the versioned API.
pub const API_PREFIX: &str = "/api/v1";
/// Request header carrying an idempotency key on creations.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Largest request body replid accepts.
pub const MAX_BODY_BYTES: usize = 1 << 20;
