//! The JSON API under `/api/v1` (and the service's own routes): one module per area, each
//! declaring its routes. A handler parses the request, calls one operation of `repli_app`, and
//! answers with a wire type of `repli_proto` or a problem document. No module here imports
//! another, nor anything of `web`.

pub(crate) mod crises;
pub(crate) mod documents;
pub(crate) mod exercises;
pub(crate) mod inventory;
pub(crate) mod journal;
pub(crate) mod service;
pub(crate) mod steps;
pub(crate) mod tenant;
pub(crate) mod users;
