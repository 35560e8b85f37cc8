//! The inbound APIs, one [`super::ClientDialect`] each.

pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod gemini;
pub(crate) mod messages;
pub(crate) mod responses;

pub(crate) use chat::Chat;
pub(crate) use embeddings::Embeddings;
pub(crate) use messages::Messages;
pub(crate) use responses::Responses;
