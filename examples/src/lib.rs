//! Runnable examples of `onem2m-sa`; see the `[[example]]` targets of this package.
#![forbid(unsafe_code)]
