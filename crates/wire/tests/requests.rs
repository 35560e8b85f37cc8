//! The client request types keep what they don't model, and the response types carry
//! what is newer than this code.

use jusinfer_wire::anthropic::{Block, MessageCreateParams, MessagesResponse, StreamEvent};
use jusinfer_wire::embeddings::{EmbeddingCreateParams, Input};
use jusinfer_wire::responses::ResponseCreateParams;
use serde_json::json;

#[test]
fn a_responses_request_keeps_every_field_it_does_not_model() {
    let sent = json!({
        "model": "gpt-5", "input": "hi", "stream": true, "store": false,
        "temperature": 1, "top_p": 0.5, "reasoning": {"effort": "low", "generate_summary": "x"},
        "max_tool_calls": 3, "some_future_field": {"a": [1, 2]},
    });
    let r: ResponseCreateParams = serde_json::from_value(sent.clone()).expect("typed");
    assert_eq!(r.stream, Some(true));
    assert_eq!(r.store, Some(false));
    assert_eq!(r.rest["some_future_field"], json!({"a": [1, 2]}));
    assert_eq!(r.reasoning.as_ref().map(|x| x.rest.len()), Some(1));
    // Back to JSON: the same object, an integer still an integer.
    assert_eq!(serde_json::to_value(&r).expect("json"), sent);
}

#[test]
fn a_mistyped_responses_field_is_refused_by_name() {
    let e = serde_json::from_value::<ResponseCreateParams>(json!({"model": "m", "stream": "yes"}))
        .expect_err("refused");
    assert!(e.to_string().contains("boolean"), "{e}");
}

#[test]
fn a_messages_request_keeps_every_field_it_does_not_model() {
    let sent = json!({
        "model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}],
        "thinking": {"type": "enabled", "budget_tokens": 1024}, "top_k": 5,
        "context_management": {"edits": []},
    });
    let r: MessageCreateParams = serde_json::from_value(sent.clone()).expect("typed");
    assert_eq!(r.max_tokens, Some(10));
    assert_eq!(r.rest.len(), 3);
    assert_eq!(serde_json::to_value(&r).expect("json"), sent);
}

#[test]
fn an_embeddings_request_reads_every_input_shape() {
    for (input, want) in [
        (json!("a"), Input::One("a".into())),
        (json!(["a", "b"]), Input::Many(vec!["a".into(), "b".into()])),
        (json!([1, 2]), Input::Tokens(vec![1, 2])),
        (json!([[1], [2]]), Input::ManyTokens(vec![vec![1], vec![2]])),
    ] {
        let r: EmbeddingCreateParams =
            serde_json::from_value(json!({"model": "e", "input": input, "x": 1})).expect("typed");
        assert_eq!(r.input, want);
        assert_eq!(r.rest["x"], 1);
    }
}

#[test]
fn a_block_or_event_newer_than_this_code_is_carried_not_dropped() {
    let block = json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                       "content": [{"type": "web_search_result", "url": "u"}]});
    let msg: MessagesResponse = serde_json::from_value(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
        "content": [{"type": "text", "text": "hi"}, block.clone()],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }))
    .expect("a response");
    assert!(matches!(&msg.content[0], Block::Text { .. }));
    assert!(matches!(&msg.content[1], Block::Unknown(v) if *v == block));
    let event = json!({"type": "future_event", "x": 1});
    let e: StreamEvent = serde_json::from_value(event.clone()).expect("an event");
    assert!(matches!(e, StreamEvent::Unknown(v) if v == event));
    let ping: StreamEvent = serde_json::from_value(json!({"type": "ping"})).expect("ping");
    assert!(matches!(ping, StreamEvent::Ping));
}
