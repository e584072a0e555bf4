//! Starting the daemon: the daemon itself, logging, the TLS listener, hyper's bare refusals
//! replaced. (The configuration itself is
//! `repli_config`, re-exported as `replid::config`.)

pub mod daemon;
pub mod logging;
pub mod notify;
pub mod refusals;
pub mod tls;
