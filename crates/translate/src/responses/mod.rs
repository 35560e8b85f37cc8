//! Serving the OpenAI Responses API from a Chat Completions upstream (and, through the
//! Anthropic translation, from Anthropic):
//!
//! - [`request`]: `input` → stored items; a Responses request plus its conversation → a
//!   Chat request, and what was dropped.
//! - [`response`]: the Response envelope, usage, a `chat.completion` → a Response.
//! - [`stream`]: Chat chunks → Responses events with `sequence_number`, incrementally;
//!   and the pass-through reader for upstreams that speak Responses themselves.

pub mod request;
pub mod response;
pub mod stream;
