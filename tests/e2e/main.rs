//! End-to-end tests: one binary, the real daemon on a real socket and SQLite file.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access;
mod agents;
mod architecture;
mod audit;
mod backup;
mod bad_input;
mod browser;
mod crash;
mod daemon;
mod demo;
mod dns;
mod documents;
mod engine;
mod exercise;
mod flash;
mod handback;
mod inventory;
mod lifecycle;
mod metrics;
mod notify;
mod packaging;
mod privacy;
mod second_factor;
mod sla;
mod storage;
mod tls;
mod web;
