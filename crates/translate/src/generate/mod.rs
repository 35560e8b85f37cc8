//! The Gemini API inbound (`generateContent`, `streamGenerateContent`): a Gemini request
//! served by any upstream through the Chat hub. [`request`] turns it into a Chat request,
//! [`response`] a `chat.completion` into a `GenerateContentResponse`, [`stream`] a Chat
//! stream into Gemini's (and relays a Gemini upstream's as it is). The opposite direction
//! (Chat requests to Gemini upstreams) is [`crate::gemini`].

pub mod embed;
pub mod request;
pub mod response;
pub mod stream;
