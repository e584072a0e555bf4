//! What the API and the pages share at the HTTP edge: authentication, the route table and its
//! access rules, the OpenAPI document built from it, extractors, problem documents, request
//! ids and response helpers. Nothing here holds a business rule.

pub mod auth;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod request_id;
pub mod respond;
pub mod routes;
pub mod spec;
