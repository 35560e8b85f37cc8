//! Wire types of the dialects jusinfer speaks.
//!
//! Request types here are for reading a client's request (validation with precise
//! `param` paths, routing, and the providers that build answers themselves): fields the
//! gateway does not model are simply not read, because same-dialect calls forward the
//! client's raw bytes. Response types are what the gateway writes when it has to author a
//! body itself. No I/O, no async.

pub mod anthropic;
pub mod bedrock;
pub mod chat;
pub mod embeddings;
pub mod error;
pub mod gemini;
pub mod responses;
