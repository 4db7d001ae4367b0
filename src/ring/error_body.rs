//! The JSON body of ERROR and INIT_ERROR records:
//! `{"errorType": str, "errorMessage": str, "stackTrace": [str, ...]}`,
//! the shape AWS Lambda runtimes report.

use serde_json::{json, Value};

/// errorType for a body that is not the expected JSON.
pub const INVALID_ERROR: &str = "Runtime.InvalidError";
/// Longest errorType kept (in bytes); longer ones are cut.
const MAX_TYPE: usize = 256;

/// Encode a function error for an ERROR or INIT_ERROR record.
pub fn function_error_body(error_type: &str, message: &str, stack_trace: &[String]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "errorType": error_type,
        "errorMessage": message,
        "stackTrace": stack_trace,
    }))
    .expect("strings always serialise")
}

/// Decode an ERROR/INIT_ERROR body into (errorType, errorMessage, stack
/// trace joined with `\n`). Never fails: a body that is not a JSON object
/// with a string `errorType` gives errorType `Runtime.InvalidError` and the
/// body (lossily decoded) as the message. `stackTrace` may be a list of
/// strings or one string.
pub fn parse_function_error(body: &[u8]) -> (String, String, Option<String>) {
    let invalid = || {
        let text = String::from_utf8_lossy(body);
        (
            INVALID_ERROR.to_string(),
            cut(&text, 4096).to_string(),
            None,
        )
    };
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return invalid();
    };
    let Some(Value::String(error_type)) = obj.get("errorType") else {
        return invalid();
    };
    let message = match obj.get("errorMessage") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let stack = match obj.get("stackTrace") {
        Some(Value::Array(lines)) if !lines.is_empty() => Some(
            lines
                .iter()
                .map(|l| match l {
                    Value::String(s) => s.trim_end_matches('\n').to_string(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    (cut(error_type, MAX_TYPE).to_string(), message, stack)
}

/// `s` cut to at most `max` bytes, on a char boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_an_encoded_error() {
        let body = function_error_body(
            "ValueError",
            "bad input",
            &["line 1".into(), "line 2\n".into()],
        );
        let (t, m, s) = parse_function_error(&body);
        assert_eq!(t, "ValueError");
        assert_eq!(m, "bad input");
        assert_eq!(s.as_deref(), Some("line 1\nline 2"));
    }

    #[test]
    fn garbage_is_an_invalid_error() {
        for body in [
            &b"not json"[..],
            b"",
            b"[1,2]",
            b"{\"errorType\": 5}",
            b"\xff\xfe{",
        ] {
            let (t, _, s) = parse_function_error(body);
            assert_eq!(t, INVALID_ERROR, "{body:?}");
            assert_eq!(s, None);
        }
        let (_, m, _) = parse_function_error(b"not json");
        assert_eq!(m, "not json");
    }

    #[test]
    fn tolerates_odd_fields() {
        let (t, m, s) =
            parse_function_error(br#"{"errorType":"E","errorMessage":42,"stackTrace":"one"}"#);
        assert_eq!(
            (t.as_str(), m.as_str(), s.as_deref()),
            ("E", "42", Some("one"))
        );
        let (_, m, s) = parse_function_error(br#"{"errorType":"E"}"#);
        assert_eq!((m.as_str(), s), ("", None));
        let long = format!(r#"{{"errorType":"{}"}}"#, "é".repeat(300));
        let (t, _, _) = parse_function_error(long.as_bytes());
        assert!(t.len() <= MAX_TYPE && t.chars().all(|c| c == 'é'));
    }
}
