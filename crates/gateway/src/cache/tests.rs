use super::*;
use axum::http::HeaderValue;
use serde_json::json;

fn key(body: Value) -> String {
    cache_key(
        ("/v1/chat/completions", "key_a", "smart"),
        &[],
        (&HeaderMap::new(), &[]),
        &body,
    )
}

#[test]
fn the_key_ignores_order_whitespace_and_the_fields_that_do_not_change_the_answer() {
    let a = key(
        json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}),
    );
    let b: Value = serde_json::from_str(
        r#"{ "temperature":0, "stream": true, "stream_options": {"include_usage": true},
            "user": "u1", "metadata": {"a": "b"}, "store": false,
            "messages":[{"content":"hi","role":"user"}], "model":"smart" }"#,
    )
    .unwrap_or_default();
    assert_eq!(a, key(b));
    // What changes the answer changes the key: content, a knob, nested order of arrays.
    assert_ne!(
        a,
        key(
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi!"}], "temperature": 0})
        )
    );
    assert_ne!(
        a,
        key(
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}], "temperature": 1})
        )
    );
    assert_ne!(
        a,
        key(
            json!({"model": "smart", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, "n": 2})
        )
    );
    // A field named like an ignored one below the top level counts.
    assert_ne!(
        key(json!({"tools": [{"metadata": 1}]})),
        key(json!({"tools": [{}]}))
    );
    // Scope, model and endpoint separate entries.
    let body = json!({"x": 1});
    let k = |e, s, m| cache_key((e, s, m), &[], (&HeaderMap::new(), &[]), &body);
    assert_ne!(
        k("/v1/chat/completions", "key_a", "m"),
        k("/v1/chat/completions", "key_b", "m")
    );
    assert_ne!(
        k("/v1/chat/completions", "key_a", "m"),
        k("/v1/chat/completions", "key_a", "n")
    );
    assert_ne!(
        k("/v1/chat/completions", "key_a", "m"),
        k("/v1/responses", "key_a", "m")
    );
    // No ambiguity from concatenation.
    assert_ne!(k("/e", "ab", "c"), k("/e", "a", "bc"));
    // Headers the dialect names count; others do not.
    let with = |pairs: &[(&'static str, &'static str)]| {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(*n, HeaderValue::from_static(v));
        }
        cache_key(
            ("/v1/messages", "k", "m"),
            &[],
            (&h, &["anthropic-beta"]),
            &body,
        )
    };
    assert_eq!(with(&[]), with(&[("x-other", "1")]));
    assert_ne!(
        with(&[]),
        with(&[("anthropic-beta", "context-1m-2025-08-07")])
    );
    assert_ne!(
        with(&[("anthropic-beta", "a")]),
        with(&[("anthropic-beta", "b")])
    );
}

fn caller(cache: Option<bool>) -> Caller {
    Caller {
        key: Some(std::sync::Arc::new(crate::store::KeyRecord {
            id: "key_a".into(),
            cache,
            ..Default::default()
        })),
    }
}

fn settings() -> CacheSettings {
    CacheSettings {
        backend: CacheBackend::Store,
        ttl: Duration::from_secs(60),
        max_entries: 10,
        max_bytes: 1 << 20,
        max_entry_bytes: 1 << 16,
    }
}

fn policy(when: CacheWhen, shared: bool) -> CachePolicy {
    CachePolicy {
        ttl: Duration::from_secs(5),
        when,
        shared,
    }
}

fn decide(
    alias: Option<CachePolicy>,
    key: Option<bool>,
    headers: &[(&'static str, &'static str)],
    body: &str,
) -> Plan {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(*k, HeaderValue::from_static(v));
    }
    plan(
        &settings(),
        alias.as_ref(),
        &caller(key),
        (&h, &[]),
        ("/v1/chat/completions", "smart", &[]),
        body.as_bytes(),
    )
}

fn label(p: &Plan) -> String {
    match p {
        Plan::Off => "off".into(),
        Plan::Bypass => "bypass".into(),
        Plan::Use(l) => format!(
            "use read={} scope={} ttl={} max_age={:?} usage={}",
            l.read,
            l.scope,
            l.ttl.as_secs(),
            l.max_age,
            l.include_usage
        ),
    }
}

#[test]
fn plans_follow_the_alias_the_key_and_the_client() {
    let always = Some(policy(CacheWhen::Always, false));
    let body = r#"{"model":"smart","messages":[],"stream_options":{"include_usage":true}}"#;
    assert_eq!(label(&decide(None, None, &[], body)), "off");
    assert_eq!(label(&decide(always, Some(false), &[], body)), "off");
    assert_eq!(
        label(&decide(always, None, &[], body)),
        "use read=true scope=key_a ttl=5 max_age=None usage=true"
    );
    // A key that turns the cache on uses the `[cache]` defaults for a model without any.
    assert_eq!(
        label(&decide(None, Some(true), &[], body)),
        "use read=true scope=key_a ttl=60 max_age=None usage=true"
    );
    assert_eq!(
        label(&decide(
            Some(policy(CacheWhen::Always, true)),
            None,
            &[],
            body
        )),
        "use read=true scope=* ttl=5 max_age=None usage=true"
    );
    assert_eq!(
        label(&decide(
            always,
            None,
            &[("cache-control", "no-store")],
            body
        )),
        "bypass"
    );
    assert_eq!(
        label(&decide(
            always,
            None,
            &[("cache-control", "max-age=30, no-cache")],
            body
        )),
        "use read=false scope=key_a ttl=5 max_age=Some(30) usage=true"
    );
    assert_eq!(
        label(&decide(always, None, &[("x-jusinfer-cache", "off")], body)),
        "bypass"
    );
    let header = Some(policy(CacheWhen::Header, false));
    assert_eq!(label(&decide(header, None, &[], body)), "bypass");
    assert!(matches!(
        decide(header, None, &[("x-jusinfer-cache", "on")], body),
        Plan::Use(_)
    ));
    let det = Some(policy(CacheWhen::Deterministic, false));
    assert_eq!(label(&decide(det, None, &[], body)), "bypass");
    assert!(matches!(
        decide(det, None, &[], r#"{"temperature":0,"messages":[]}"#),
        Plan::Use(_)
    ));
    assert!(matches!(
        decide(
            det,
            None,
            &[],
            r#"{"generationConfig":{"temperature":0.0}}"#
        ),
        Plan::Use(_)
    ));
    assert_eq!(label(&decide(always, None, &[], "not json")), "bypass");
}

#[test]
fn usage_is_read_from_every_dialect() {
    let chat = usage_of(
        &json!({"usage": {"prompt_tokens": 10, "completion_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 4}}}),
    );
    assert_eq!((chat.prompt_tokens, chat.completion_tokens), (10, 3));
    assert_eq!(chat.prompt_tokens_details.map(|d| d.cached_tokens), Some(4));
    let responses = usage_of(&json!({"usage": {"input_tokens": 7, "output_tokens": 2,
        "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 1}}}));
    assert_eq!(
        (responses.prompt_tokens, responses.completion_tokens),
        (7, 2)
    );
    let messages = usage_of(&json!({"usage": {"input_tokens": 5, "output_tokens": 9,
        "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}}));
    assert_eq!(
        (messages.prompt_tokens, messages.completion_tokens),
        (125, 9)
    );
    let gemini = usage_of(&json!({"usageMetadata": {"promptTokenCount": 8,
        "candidatesTokenCount": 6, "thoughtsTokenCount": 4}}));
    assert_eq!((gemini.prompt_tokens, gemini.completion_tokens), (8, 10));
    assert_eq!(gemini.total_tokens, 18);
}

#[test]
fn only_finished_successes_are_complete() {
    assert!(complete(&json!({"id": "x", "choices": []})));
    assert!(complete(
        &json!({"object": "response", "status": "completed"})
    ));
    assert!(!complete(
        &json!({"object": "response", "status": "incomplete"})
    ));
    assert!(!complete(&json!({"error": {"message": "no"}})));
    assert!(!complete(&json!([1, 2])));
}
