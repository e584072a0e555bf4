//! Starting the daemon: logging, the TLS listener. (The configuration itself is
//! `repli_config`, re-exported as `replid::config`.)

pub mod logging;
pub mod tls;
