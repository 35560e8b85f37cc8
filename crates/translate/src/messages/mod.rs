//! Serving the Anthropic Messages API from a Chat Completions upstream (the inbound
//! direction of `anthropic`):
//!
//! - [`request`]: a Messages request → a Chat request, plus what was dropped.
//! - [`response`]: a `chat.completion` → a Messages response.
//! - [`stream`]: Chat chunks → Anthropic stream events, incrementally.

pub mod request;
pub mod response;
pub mod stream;
