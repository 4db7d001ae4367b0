//! Lambda's encodings on the bridge: the answer to `/next` built from an
//! INVOKE, and the error JSON pushed on the ring from what the runtime
//! posted.

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::http::{header_safe, Answer};
use crate::ring::{cut, function_error_body, Invoke};

/// Longest error type kept from a runtime's header or trailer.
const MAX_ERROR_TYPE: usize = 256;
/// Longest message kept when the bridge builds the error JSON itself.
const MAX_MESSAGE: usize = 4096;

/// What every `/next` answer of this sandbox says about the function.
#[derive(Debug, Clone)]
pub struct Function {
    /// `arn:aws:lambda:REGION:000000000000:function:NAME`.
    pub arn: String,
}

impl Function {
    /// `region`: `AWS_REGION` of the function's environment, if set.
    pub fn new(name: &str, region: Option<&str>) -> Function {
        let region = region
            .filter(|r| !r.is_empty())
            .unwrap_or(crate::lambda::env::DEFAULT_REGION);
        Function {
            arn: crate::lambda::env::function_arn(region, name),
        }
    }
}

/// The INVOKE meta keys the bridge uses beyond id and deadline (see
/// runtimes/README.md); anything unreadable is simply left out.
#[derive(Debug, Default, Deserialize)]
struct Meta {
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    xray_trace_id: Option<String>,
    #[serde(default)]
    client_context: Option<String>,
    #[serde(default)]
    cognito_identity: Option<String>,
}

/// The `200` answer to `/next` that hands out `invoke`. An empty payload
/// is sent as `null`, the event sprout's runtimes see for it (Lambda's
/// runtime clients cannot decode an empty JSON body).
pub fn next_answer(function: &Function, invoke: Invoke) -> Answer {
    let meta: Meta = serde_json::from_slice(&invoke.meta).unwrap_or_default();
    let mut headers = vec![
        ("Lambda-Runtime-Aws-Request-Id", invoke.id.to_string()),
        ("Lambda-Runtime-Invoked-Function-Arn", function.arn.clone()),
    ];
    if let Some(deadline) = invoke.deadline_ms {
        headers.push(("Lambda-Runtime-Deadline-Ms", deadline.to_string()));
    }
    if let Some(trace) = trace_header(&meta, invoke.id) {
        headers.push(("Lambda-Runtime-Trace-Id", trace));
    }
    let optional = [
        ("Lambda-Runtime-Client-Context", meta.client_context),
        ("Lambda-Runtime-Cognito-Identity", meta.cognito_identity),
    ];
    for (name, value) in optional {
        if let Some(value) = value.filter(|v| header_safe(v)) {
            headers.push((name, value));
        }
    }
    let body = if invoke.payload.is_empty() {
        b"null".to_vec()
    } else {
        invoke.payload
    };
    Answer {
        status: 200,
        headers,
        body,
    }
}

/// The meta's X-Ray header, or one derived from its `trace_id`.
fn trace_header(meta: &Meta, id: u64) -> Option<String> {
    if let Some(xray) = meta.xray_trace_id.as_ref().filter(|v| header_safe(v)) {
        return Some(xray.clone());
    }
    let hex = meta.trace_id.as_deref()?;
    let trace = u128::from_str_radix(hex, 16).ok()?;
    Some(
        crate::trace::XrayHeader {
            trace_id: trace,
            id,
        }
        .to_string(),
    )
}

/// The ERROR / INIT_ERROR body for what the runtime posted: its own error
/// JSON as written when it is an object with a string `errorType`; an
/// object without one gets `error_type` (the `Lambda-Runtime-Function-
/// Error-Type` header, else `Unhandled`) added; anything else becomes the
/// message of an error JSON of that type. Never longer than `max`.
pub fn error_body(posted: &[u8], error_type: Option<&str>, max: usize) -> Vec<u8> {
    let error_type = clean_type(error_type);
    let body = match serde_json::from_slice::<Value>(posted) {
        Ok(Value::Object(obj)) if obj.get("errorType").is_some_and(Value::is_string) => {
            posted.to_vec()
        }
        Ok(Value::Object(mut obj)) => {
            obj.insert("errorType".into(), Value::from(error_type.as_str()));
            serde_json::to_vec(&obj).unwrap_or_default()
        }
        _ => build(&error_type, &String::from_utf8_lossy(posted), MAX_MESSAGE),
    };
    if body.len() <= max {
        return body;
    }
    // Only a rebuilt body can outgrow the posted one (escaping): cut.
    build(&error_type, &String::from_utf8_lossy(posted), max / 8)
}

/// The error of a streamed response, from its trailers: the type from
/// `Lambda-Runtime-Function-Error-Type`, the body base64 in
/// `Lambda-Runtime-Function-Error-Body`. `None` when the stream ended
/// without an error.
pub fn streamed_error(trailers: &[(String, Vec<u8>)], max: usize) -> Option<Vec<u8>> {
    let error_type = super::http::header(trailers, "lambda-runtime-function-error-type")?;
    let posted = super::http::header(trailers, "lambda-runtime-function-error-body")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .unwrap_or_default();
    Some(error_body(&posted, Some(error_type), max))
}

/// The error pushed for an invocation whose response was over the ring's
/// limit (Lambda's `Function.ResponseSizeTooLarge`).
pub fn too_large_body(limit: usize) -> Vec<u8> {
    function_error_body(
        "Function.ResponseSizeTooLarge",
        &format!("Response payload size exceeded maximum allowed payload size ({limit} bytes)."),
        &[],
    )
}

/// The `413` answer.
pub fn too_large_answer(limit: usize) -> Answer {
    Answer::error(
        413,
        "RequestEntityTooLarge",
        &format!("Exceeded maximum allowed payload size ({limit} bytes)."),
    )
}

fn build(error_type: &str, message: &str, max_message: usize) -> Vec<u8> {
    function_error_body(error_type, cut(message, max_message), &[])
}

fn clean_type(error_type: Option<&str>) -> String {
    let t = error_type
        .map(str::trim)
        .filter(|t| !t.is_empty() && header_safe(t));
    cut(t.unwrap_or("Unhandled"), MAX_ERROR_TYPE).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::parse_function_error;

    fn invoke(meta: &str, payload: &[u8]) -> Invoke {
        Invoke {
            id: 42,
            deadline_ms: Some(1_700_000_000_123),
            meta: meta.as_bytes().to_vec(),
            payload: payload.to_vec(),
        }
    }

    fn value<'a>(answer: &'a Answer, name: &str) -> Option<&'a str> {
        answer
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn next_answer_carries_lambdas_headers() {
        let f = Function::new("greeter", Some("eu-west-1"));
        let meta = r#"{"id":42,"deadline_ms":1700000000123,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","client_context":"{\"a\":1}","cognito_identity":"bad\r\nX: y"}"#;
        let a = next_answer(&f, invoke(meta, b"{\"k\":1}"));
        assert_eq!(a.status, 200);
        assert_eq!(a.body, b"{\"k\":1}");
        assert_eq!(value(&a, "Lambda-Runtime-Aws-Request-Id"), Some("42"));
        assert_eq!(
            value(&a, "Lambda-Runtime-Deadline-Ms"),
            Some("1700000000123")
        );
        assert_eq!(
            value(&a, "Lambda-Runtime-Invoked-Function-Arn"),
            Some("arn:aws:lambda:eu-west-1:000000000000:function:greeter")
        );
        assert_eq!(
            value(&a, "Lambda-Runtime-Trace-Id"),
            Some("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=000000000000002a;Sampled=1")
        );
        assert_eq!(
            value(&a, "Lambda-Runtime-Client-Context"),
            Some("{\"a\":1}")
        );
        // A value that would end the header is left out.
        assert_eq!(value(&a, "Lambda-Runtime-Cognito-Identity"), None);
        let text = String::from_utf8(a.encode(false)).unwrap();
        assert!(
            text.contains("\r\nContent-Type: application/json\r\n"),
            "{text}"
        );
    }

    #[test]
    fn next_answer_prefers_the_metas_xray_id_and_sends_null_for_nothing() {
        let f = Function::new("f", None);
        assert!(f.arn.starts_with("arn:aws:lambda:us-east-1:"));
        let a = next_answer(
            &f,
            invoke(r#"{"xray_trace_id":"Root=1-a-b;Parent=c;Sampled=0"}"#, b""),
        );
        assert_eq!(
            value(&a, "Lambda-Runtime-Trace-Id"),
            Some("Root=1-a-b;Parent=c;Sampled=0")
        );
        assert_eq!(a.body, b"null");
        let bare = next_answer(&f, invoke("", b"1"));
        assert_eq!(value(&bare, "Lambda-Runtime-Trace-Id"), None);
    }

    #[test]
    fn error_bodies_keep_the_runtimes_json_or_build_one() {
        let own = br#"{"errorType":"ValueError","errorMessage":"bad","stackTrace":["x"]}"#;
        assert_eq!(error_body(own, Some("Other"), 1 << 20), own.to_vec());

        let untyped = error_body(br#"{"errorMessage":"m"}"#, Some("MyError"), 1 << 20);
        let (t, m, _) = parse_function_error(&untyped);
        assert_eq!((t.as_str(), m.as_str()), ("MyError", "m"));

        let text = error_body(b"it broke", None, 1 << 20);
        let (t, m, _) = parse_function_error(&text);
        assert_eq!((t.as_str(), m.as_str()), ("Unhandled", "it broke"));

        let evil = error_body(b"x", Some("A\r\nB"), 1 << 20);
        assert_eq!(parse_function_error(&evil).0, "Unhandled");

        let control = vec![1u8; 1000];
        let cut = error_body(&control, None, 800);
        assert!(cut.len() <= 800, "{}", cut.len());
        assert_eq!(parse_function_error(&cut).0, "Unhandled");
    }

    #[test]
    fn streamed_errors_come_from_trailers() {
        let trailers = vec![
            (
                "lambda-runtime-function-error-type".to_owned(),
                b"Stream.Broke".to_vec(),
            ),
            (
                "lambda-runtime-function-error-body".to_owned(),
                base64::engine::general_purpose::STANDARD
                    .encode(br#"{"errorType":"Stream.Broke","errorMessage":"mid-stream"}"#)
                    .into_bytes(),
            ),
        ];
        let body = streamed_error(&trailers, 1 << 20).unwrap();
        let (t, m, _) = parse_function_error(&body);
        assert_eq!((t.as_str(), m.as_str()), ("Stream.Broke", "mid-stream"));
        assert_eq!(streamed_error(&[], 1 << 20), None);
        let (t, _, _) = parse_function_error(&too_large_body(10));
        assert_eq!(t, "Function.ResponseSizeTooLarge");
    }
}
