//! Canned answers: the recorded bodies and streams each scenario replays, and the
//! synthetic ones of the load scenarios.

use bytes::Bytes;
use serde_json::Value;

use crate::fixtures;
use crate::scenario::Scenario;
use crate::streamify::{streamify, Style};

/// The recorded non-streaming body for a scenario.
pub(crate) fn nonstream_body(name: &str) -> anyhow::Result<Option<(u16, Bytes)>> {
    Ok(Some(match name {
        "text" => (200, fixtures::read("openai-chat/chat_nonstream_text.json")?),
        "parallel" => (
            200,
            fixtures::read("openai-chat/chat_nonstream_parallel_tool_calls.json")?,
        ),
        "length" => (
            200,
            fixtures::read("openai-chat/chat_nonstream_finish_length.json")?,
        ),
        "cache" => {
            let v = fixtures::json("openai-chat/chat_usage_prompt_cache.responses.json")?;
            (200, Bytes::from(v["responses"][1].to_string()))
        }
        "err400" => (
            400,
            fixtures::read("errors/openai_400_unsupported_parameter.json")?,
        ),
        "err401" => (
            401,
            fixtures::read("errors/openai_401_invalid_api_key.json")?,
        ),
        "err429" => (
            429,
            fixtures::read("errors/openai_429_insufficient_quota.json")?,
        ),
        "fast" => (200, Bytes::from_static(FAST_BODY.as_bytes())),
        "reasoning" => (200, Bytes::from_static(REASONING_BODY.as_bytes())),
        _ => return Ok(None),
    }))
}

pub(crate) const FAST_BODY: &str = r#"{"id":"chatcmpl-fast","object":"chat.completion","created":1727346142,"model":"fast","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the simulator.","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":5,"total_tokens":14}}"#;

/// A compatible server's reasoning model (DeepSeek, vLLM): `reasoning_content` beside the
/// answer.
pub(crate) const REASONING_BODY: &str = r#"{"id":"chatcmpl-r","object":"chat.completion","created":1727346142,"model":"reasoning","choices":[{"index":0,"message":{"role":"assistant","reasoning_content":"The user greets me. I greet back.","content":"Hello!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":15,"total_tokens":27,"completion_tokens_details":{"reasoning_tokens":10}}}"#;

pub(crate) fn reasoning_stream(include_usage: bool) -> Vec<Bytes> {
    let chunk = |delta: &str, finish: &str| {
        Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":1727346142,\"model\":\"reasoning\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"finish_reason\":{finish}}}]}}\n\n"
        ))
    };
    let mut out = vec![
        chunk(
            r#"{"role":"assistant","reasoning_content":"The user greets me."}"#,
            "null",
        ),
        chunk(r#"{"reasoning_content":" I greet back."}"#, "null"),
        chunk(r#"{"content":"Hello!"}"#, "null"),
        chunk("{}", r#""stop""#),
    ];
    if include_usage {
        out.push(Bytes::from_static(b"data: {\"id\":\"chatcmpl-r\",\"object\":\"chat.completion.chunk\",\"created\":1727346142,\"model\":\"reasoning\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":15,\"total_tokens\":27}}\n\n"));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}

/// The frames of the recorded (or derived) stream for a scenario.
pub(crate) fn stream_frames(
    sc: &Scenario,
    include_usage: bool,
) -> anyhow::Result<Option<Vec<Bytes>>> {
    let recorded = |rel: &str| -> anyhow::Result<Vec<Bytes>> {
        let raw = fixtures::read(rel)?;
        let mut d = jusinfer_sse::Decoder::new();
        d.push(&raw);
        let mut out = Vec::new();
        while let Some(ev) = d.next_event()? {
            out.push(ev);
        }
        out.extend(d.finish()?);
        // A real upstream sends the usage chunk only when asked.
        Ok(out
            .into_iter()
            .filter(|ev| include_usage || !is_usage_chunk(&ev.data))
            .map(|ev| ev.raw)
            .collect())
    };
    Ok(Some(match sc.name.as_str() {
        "text" => recorded("openai-chat/chat_stream_text_with_usage.sse")?,
        "capital" => recorded("openai-chat/chat_stream_tool_call_roundtrip.turn1.sse")?,
        "answer" => recorded("openai-chat/chat_stream_tool_call_roundtrip.turn2.sse")?,
        "fast" => fast_stream(sc.chunks, sc.chunk_bytes, include_usage),
        "reasoning" => reasoning_stream(include_usage),
        name => match nonstream_body(name)? {
            Some((200, body)) => {
                let v: Value = serde_json::from_slice(&body)?;
                streamify(&v, sc.style.unwrap_or(Style::Standard), include_usage)
            }
            _ => return Ok(None),
        },
    }))
}

pub(crate) fn is_usage_chunk(data: &[u8]) -> bool {
    serde_json::from_slice::<Value>(data)
        .map(|v| v["choices"].as_array().is_some_and(Vec::is_empty) && v["usage"].is_object())
        .unwrap_or(false)
}

pub(crate) fn fast_stream(chunks: usize, chunk_bytes: usize, include_usage: bool) -> Vec<Bytes> {
    let filler = "x".repeat(chunk_bytes);
    let head = r#"{"id":"chatcmpl-fast","object":"chat.completion.chunk","created":1727346142,"model":"fast","choices":[{"index":0,"delta":"#;
    let mut out = vec![Bytes::from(format!("data: {head}{{\"role\":\"assistant\",\"content\":\"\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"))];
    for i in 0..chunks {
        out.push(Bytes::from(format!(
            "data: {head}{{\"content\":\"tok{i} {filler}\"}},\"logprobs\":null,\"finish_reason\":null}}]}}\n\n"
        )));
    }
    out.push(Bytes::from(format!(
        "data: {head}{{}},\"logprobs\":null,\"finish_reason\":\"stop\"}}]}}\n\n"
    )));
    if include_usage {
        out.push(Bytes::from(format!(
            "data: {{\"id\":\"chatcmpl-fast\",\"object\":\"chat.completion.chunk\",\"created\":1727346142,\"model\":\"fast\",\"choices\":[],\"usage\":{{\"prompt_tokens\":9,\"completion_tokens\":{chunks},\"total_tokens\":{}}}}}\n\n",
            chunks + 9
        )));
    }
    out.push(Bytes::from_static(b"data: [DONE]\n\n"));
    out
}
