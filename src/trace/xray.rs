//! AWS X-Ray's trace header, derived from sprout's trace context so a
//! Lambda runtime (and the AWS SDKs in the function) join the same tree:
//! `Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`. The root is the
//! 128-bit trace id split as X-Ray splits its ids (the first 32 bits are
//! a time in X-Ray's own ids; here they are simply the trace id's top
//! bits); the parent is the invocation's span id, which is its
//! invocation id (as in the OTLP export).

/// The X-Ray trace header of the invocation `span_id` in trace `trace_id`
/// (`_X_AMZN_TRACE_ID`, `Lambda-Runtime-Trace-Id`).
pub fn xray_trace_id(trace_id: u128, span_id: u64) -> String {
    let hex = format!("{trace_id:032x}");
    format!(
        "Root=1-{}-{};Parent={span_id:016x};Sampled=1",
        &hex[..8],
        &hex[8..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_trace_id_as_xray_does() {
        assert_eq!(
            xray_trace_id(0x4bf92f3577b34da6a3ce929d0e0e4736, 42),
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=000000000000002a;Sampled=1"
        );
        assert_eq!(
            xray_trace_id(1, u64::MAX),
            "Root=1-00000000-000000000000000000000001;Parent=ffffffffffffffff;Sampled=1"
        );
    }
}
