//! The upstream-kind descriptors: everything the gateway knows about one kind of provider
//! as data, read by the request path instead of matching on [`ProviderKind`]. This file
//! holds the one `match` on it (`UpstreamKind::of`); a new kind is a new entry here plus
//! its translation module (ARCHITECTURE.md, "Adding an upstream kind").

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::{HeaderName, HeaderValue, StatusCode};

use super::Provider;
use crate::config::{ProviderConfig, ProviderKind};
use crate::error::GatewayError;

/// The dialect an upstream kind speaks natively: what a client request in that dialect is
/// passed through to, and what every other dialect is translated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Speaks {
    /// OpenAI Chat Completions (and embeddings, and Responses where configured).
    Chat,
    /// Anthropic Messages.
    Messages,
    /// Google's Gemini `generateContent`.
    Gemini,
    /// Amazon Bedrock's Converse (its streams in AWS's binary event stream).
    Converse,
    /// Answered in process (`echo`).
    Local,
}

/// The upstream endpoints the gateway calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// The kind's generation endpoint: Chat Completions, or Messages for Anthropic.
    ChatCompletions,
    Embeddings,
    CountTokens,
    Responses,
    /// Anthropic's Messages on a kind whose generation endpoint speaks another dialect
    /// (Bedrock's InvokeModel for Claude): see [`UpstreamKind::native_messages`].
    NativeMessages,
}

/// One kind of upstream, as data.
pub(crate) struct UpstreamKind {
    pub kind: ProviderKind,
    pub speaks: Speaks,
    /// Kinds whose models speak different dialects (Vertex: Gemini and Anthropic
    /// publishers): the dialect of one model.
    pub speaks_for: Option<fn(&str) -> Speaks>,
    /// Messages bodies name no `model` and carry this `anthropic_version` (Vertex).
    pub anthropic_version_in_body: Option<&'static str>,
    /// The models this kind also serves in Messages natively, on
    /// [`Endpoint::NativeMessages`] (Bedrock: Claude through InvokeModel), so a Messages
    /// client's request goes as Messages rather than through the kind's own dialect.
    pub native_messages: Option<fn(&str) -> bool>,
    /// Each endpoint's path (and query) under the provider's `base_url`, joined once at
    /// start (`None`: the kind has no such endpoint, or `url` builds it per request).
    pub path: fn(&ProviderConfig, Endpoint) -> Option<Cow<'static, str>>,
    /// The URL of one request: the endpoint's, or (Gemini) one naming the model and
    /// whether it streams.
    pub url: fn(&Provider, Endpoint, &str, bool) -> Result<reqwest::Url, GatewayError>,
    /// How the provider's credentials go on a request (built once at start).
    pub credentials: fn(&ProviderConfig) -> Result<Credentials, String>,
    /// Headers every request of this kind carries (before the provider's configured ones),
    /// unless the client's forwarded headers already name them.
    pub fixed_headers: &'static [(&'static str, &'static str)],
    /// Turns a non-2xx answer into the client's error (the kind's error bodies).
    pub map_status: fn(&Provider, StatusCode, &[u8]) -> GatewayError,
    /// The output maximum the gateway sends when the client sets none (`None`: the
    /// upstream needs none; the limit stage then holds `hold_output_tokens`).
    pub default_max_output: fn(&ProviderConfig, &str) -> Option<u32>,
    /// Whether requests translated to this kind may carry the newest Chat fields
    /// (`max_completion_tokens`, `developer` role, `reasoning_effort`): OpenAI itself.
    pub newest_chat: bool,
    /// The `accept` of a streaming request (the stream's framing follows the answer's
    /// content type).
    pub stream_accept: &'static str,
}

impl UpstreamKind {
    /// The descriptor of `kind`.
    pub(crate) fn of(kind: ProviderKind) -> &'static Self {
        match kind {
            ProviderKind::Openai => &OPENAI,
            ProviderKind::OpenaiCompatible => &OPENAI_COMPATIBLE,
            ProviderKind::Anthropic => &ANTHROPIC,
            ProviderKind::Gemini => &GEMINI,
            ProviderKind::Vertex => &VERTEX,
            ProviderKind::Azure => &AZURE,
            ProviderKind::Bedrock => &BEDROCK,
            ProviderKind::Echo => &ECHO,
        }
    }
}

fn openai_path(c: &ProviderConfig, e: Endpoint) -> Option<Cow<'static, str>> {
    match e {
        Endpoint::ChatCompletions => Some("/chat/completions"),
        Endpoint::Embeddings => Some("/embeddings"),
        Endpoint::Responses => c.responses.then_some("/responses"),
        Endpoint::CountTokens | Endpoint::NativeMessages => None,
    }
    .map(Cow::Borrowed)
}

fn anthropic_path(c: &ProviderConfig, e: Endpoint) -> Option<Cow<'static, str>> {
    // Anthropic's base URL is the host; tolerate one that already ends in /v1.
    let v1 = c.base_url.ends_with("/v1");
    let path = match (e, v1) {
        (Endpoint::ChatCompletions, false) => Some("/v1/messages"),
        (Endpoint::ChatCompletions, true) => Some("/messages"),
        (Endpoint::CountTokens, false) => Some("/v1/messages/count_tokens"),
        (Endpoint::CountTokens, true) => Some("/messages/count_tokens"),
        (Endpoint::Embeddings | Endpoint::Responses | Endpoint::NativeMessages, _) => None,
    };
    path.map(Cow::Borrowed)
}

fn no_path(_: &ProviderConfig, _: Endpoint) -> Option<Cow<'static, str>> {
    None
}

/// The endpoint's URL, built once at start.
pub(super) fn endpoint_url(
    p: &Provider,
    e: Endpoint,
    _model: &str,
    _stream: bool,
) -> Result<reqwest::Url, GatewayError> {
    p.url(e).cloned().ok_or_else(|| {
        GatewayError::internal(format!(
            "provider `{}` has no base_url for this endpoint",
            p.name()
        ))
    })
}

fn bearer(c: &ProviderConfig) -> Result<Credentials, String> {
    Credentials::header(c, "authorization", |k| format!("Bearer {k}"))
}

fn x_api_key(c: &ProviderConfig) -> Result<Credentials, String> {
    Credentials::header(c, "x-api-key", str::to_owned)
}

fn x_goog_api_key(c: &ProviderConfig) -> Result<Credentials, String> {
    Credentials::header(c, "x-goog-api-key", str::to_owned)
}

fn none(_: &ProviderConfig) -> Result<Credentials, String> {
    Ok(Credentials::None)
}

fn no_default(_: &ProviderConfig, _: &str) -> Option<u32> {
    None
}

fn anthropic_default(c: &ProviderConfig, model: &str) -> Option<u32> {
    Some(c.max_tokens_for(model))
}

fn local_status(p: &Provider, status: StatusCode, _: &[u8]) -> GatewayError {
    GatewayError::internal(format!(
        "provider `{}` answered {status} in process",
        p.name()
    ))
}

static OPENAI: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Openai,
    speaks: Speaks::Chat,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: None,
    path: openai_path,
    url: endpoint_url,
    credentials: bearer,
    fixed_headers: &[],
    map_status: super::openai::map_status,
    default_max_output: no_default,
    newest_chat: true,
    stream_accept: "text/event-stream",
};

static OPENAI_COMPATIBLE: UpstreamKind = UpstreamKind {
    kind: ProviderKind::OpenaiCompatible,
    newest_chat: false,
    ..OPENAI
};

static ANTHROPIC: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Anthropic,
    speaks: Speaks::Messages,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: None,
    path: anthropic_path,
    url: endpoint_url,
    credentials: x_api_key,
    fixed_headers: &[("anthropic-version", super::anthropic::ANTHROPIC_VERSION)],
    map_status: super::anthropic::map_status,
    default_max_output: anthropic_default,
    newest_chat: false,
    stream_accept: "text/event-stream",
};

static GEMINI: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Gemini,
    speaks: Speaks::Gemini,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: None,
    // The model is in the path: `url` builds each request's.
    path: no_path,
    url: super::gemini::url,
    credentials: x_goog_api_key,
    fixed_headers: &[],
    map_status: super::gemini::map_status,
    default_max_output: no_default,
    newest_chat: false,
    stream_accept: "text/event-stream",
};

static VERTEX: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Vertex,
    speaks: Speaks::Gemini,
    speaks_for: Some(super::vertex::speaks_for),
    anthropic_version_in_body: Some(super::vertex::ANTHROPIC_VERSION),
    native_messages: None,
    path: no_path,
    url: super::vertex::url,
    credentials: super::vertex::credentials,
    fixed_headers: &[],
    map_status: super::vertex::map_status,
    default_max_output: super::vertex::default_max_output,
    newest_chat: false,
    stream_accept: "text/event-stream",
};

static AZURE: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Azure,
    speaks: Speaks::Chat,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: None,
    path: super::azure::path,
    url: super::azure::url,
    credentials: super::azure::credentials,
    fixed_headers: &[],
    map_status: super::azure::map_status,
    default_max_output: no_default,
    // Azure serves OpenAI's own models, reasoning ones included.
    newest_chat: true,
    stream_accept: "text/event-stream",
};

static BEDROCK: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Bedrock,
    speaks: Speaks::Converse,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: Some(super::bedrock::is_claude),
    // The model is in the path: `url` builds each request's.
    path: no_path,
    url: super::bedrock::url,
    credentials: super::bedrock::credentials,
    fixed_headers: &[],
    map_status: super::bedrock::map_status,
    default_max_output: no_default,
    newest_chat: false,
    stream_accept: "application/vnd.amazon.eventstream",
};

static ECHO: UpstreamKind = UpstreamKind {
    kind: ProviderKind::Echo,
    speaks: Speaks::Local,
    speaks_for: None,
    anthropic_version_in_body: None,
    native_messages: None,
    path: no_path,
    url: endpoint_url,
    credentials: none,
    fixed_headers: &[],
    map_status: local_status,
    default_max_output: no_default,
    newest_chat: false,
    stream_accept: "text/event-stream",
};

/// A signer that needs the whole request (AWS SigV4 signs method, path, query, headers and
/// the body's hash) or a token it fetches and refreshes (an OAuth2 service account).
pub(crate) trait Signer: Send + Sync {
    /// Puts credentials on `req`, which is otherwise complete (nothing is added after).
    fn sign<'a>(
        &'a self,
        req: &'a mut reqwest::Request,
    ) -> Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>>;
    /// Values never to be shown (scrubbed from relayed upstream errors).
    fn secrets(&self) -> Vec<String>;
    /// Learns from a refused request (a clock skew the server's `Date` shows); `true`:
    /// signing again may succeed, so the request is sent once more.
    fn observe(&self, _status: StatusCode, _headers: &reqwest::header::HeaderMap) -> bool {
        false
    }
}

/// How a provider's credentials go on its requests. Static header credentials are built
/// once (no per-request work); a [`Signer`] runs on every request.
#[derive(Clone)]
pub(crate) enum Credentials {
    None,
    /// One header, its value marked sensitive (kept out of debug output and HPACK tables).
    Header(HeaderName, HeaderValue),
    Signer(Arc<dyn Signer>),
}

impl Credentials {
    /// `name: value(api_key)`, or none without a key.
    pub(super) fn header(
        c: &ProviderConfig,
        name: &'static str,
        value: impl Fn(&str) -> String,
    ) -> Result<Self, String> {
        let Some(key) = c.api_key.as_deref() else {
            return Ok(Self::None);
        };
        let mut v = HeaderValue::from_str(&value(key)).map_err(|_| {
            format!(
                "provider {}: api_key has characters a header cannot carry",
                c.name
            )
        })?;
        v.set_sensitive(true);
        Ok(Self::Header(HeaderName::from_static(name), v))
    }

    /// Puts the credentials on `req` (the last step before it is sent).
    pub(crate) async fn apply(&self, req: &mut reqwest::Request) -> Result<(), GatewayError> {
        match self {
            Self::None => Ok(()),
            Self::Header(name, value) => {
                req.headers_mut().insert(name.clone(), value.clone());
                Ok(())
            }
            Self::Signer(s) => s.sign(req).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stamp;

    impl Signer for Stamp {
        fn sign<'a>(
            &'a self,
            req: &'a mut reqwest::Request,
        ) -> Pin<Box<dyn Future<Output = Result<(), GatewayError>> + Send + 'a>> {
            Box::pin(async move {
                // A signature over the whole request: method, URL, headers and body.
                let body = req
                    .body()
                    .and_then(reqwest::Body::as_bytes)
                    .unwrap_or_default();
                let sig = format!(
                    "{} {} {} {}",
                    req.method(),
                    req.url().path(),
                    req.headers().len(),
                    body.len()
                );
                req.headers_mut().insert(
                    "x-signature",
                    HeaderValue::from_str(&sig)
                        .map_err(|e| GatewayError::internal(e.to_string()))?,
                );
                Ok(())
            })
        }

        fn secrets(&self) -> Vec<String> {
            Vec::new()
        }
    }

    #[tokio::test]
    async fn a_signer_sees_the_finished_request() {
        let client = reqwest::Client::new();
        let mut req = client
            .post("http://127.0.0.1:9/v1/x")
            .header("content-type", "application/json")
            .body("{\"a\":1}")
            .build()
            .expect("request");
        Credentials::Signer(Arc::new(Stamp))
            .apply(&mut req)
            .await
            .expect("signed");
        assert_eq!(req.headers()["x-signature"], "POST /v1/x 1 7");
    }

    #[test]
    fn every_kind_has_one_descriptor() {
        for k in [
            ProviderKind::Openai,
            ProviderKind::OpenaiCompatible,
            ProviderKind::Anthropic,
            ProviderKind::Gemini,
            ProviderKind::Vertex,
            ProviderKind::Azure,
            ProviderKind::Bedrock,
            ProviderKind::Echo,
        ] {
            assert_eq!(UpstreamKind::of(k).kind, k);
        }
    }
}
