//! Runnable examples of `onem2m-sa`, and the demo fixtures they and the integration tests use.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod demo_cse;
pub mod demo_http;
