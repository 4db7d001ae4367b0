//! The hand-encoded hot path: Invoke and Invoked bodies, and the checked
//! reader they are decoded with. Integers are little-endian; `bytes` is a
//! `u32` length then that many bytes; `opt` is a `u8` (0 absent, 1 present)
//! then, when present, `bytes`.

use super::codec::DecodeError;
use super::messages::{CallerContext, ErrorBody, InvokeRequest, InvokeResponse};
use super::ErrorKind;

const FLAG_COLD: u8 = 1 << 0;
const FLAG_ERROR: u8 = 1 << 1;
const FLAG_AFFINITY_HIT: u8 = 1 << 2;

/// The optional trailing fields of an Invoke body, in wire order.
fn invoke_options(inv: &InvokeRequest) -> [Option<&str>; 4] {
    [
        inv.affinity.as_deref(),
        inv.traceparent.as_deref(),
        inv.caller.client_context.as_deref(),
        inv.caller.cognito_identity.as_deref(),
    ]
}

/// How many of [`invoke_options`] go on the wire: up to the last present.
fn options_sent(options: &[Option<&str>; 4]) -> usize {
    options
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1)
}

/// Body bytes of an Invoke request.
pub(super) fn invoke_len(inv: &InvokeRequest) -> usize {
    let options = invoke_options(inv);
    let sent = options_sent(&options);
    4 + inv.function.len()
        + 4
        + inv.payload.len()
        + options[..sent]
            .iter()
            .map(|o| 1 + o.map_or(0, |t| 4 + t.len()))
            .sum::<usize>()
}

/// `function: bytes, payload: bytes`, then the options `affinity: opt`,
/// `traceparent: opt`, `client_context: opt`, `cognito_identity: opt`, each
/// only when it or a later one is present (a body without any is the
/// version-1 layout).
pub(super) fn encode_invoke(inv: &InvokeRequest, out: &mut Vec<u8>) {
    put_bytes(out, inv.function.as_bytes());
    put_bytes(out, &inv.payload);
    let options = invoke_options(inv);
    for option in &options[..options_sent(&options)] {
        put_opt(out, *option);
    }
}

/// The inverse of [`encode_invoke`]; the name is validated by the caller.
pub(super) fn decode_invoke(body: &[u8]) -> Result<InvokeRequest, DecodeError> {
    const FIELDS: [&str; 4] = [
        "affinity key",
        "traceparent",
        "client context",
        "cognito identity",
    ];
    let mut r = Reader::new(body);
    let function = r.string("function name")?;
    let payload = r.bytes("payload")?.to_vec();
    let mut options: [Option<String>; 4] = Default::default();
    let mut last_absent = false;
    for (option, field) in options.iter_mut().zip(FIELDS) {
        if r.peek().is_none() {
            break;
        }
        *option = r.opt_string(field)?;
        last_absent = option.is_none();
    }
    // An absent option at the end is as redundant as trailing bytes.
    if last_absent {
        return Err(DecodeError::TrailingBytes { count: 1 });
    }
    r.end()?;
    let [affinity, traceparent, client_context, cognito_identity] = options;
    Ok(InvokeRequest {
        function,
        payload,
        affinity,
        traceparent,
        caller: CallerContext {
            client_context,
            cognito_identity,
        },
    })
}

/// Body bytes of an Invoked response without its error (a capacity hint).
pub(super) fn invoked_len(inv: &InvokeResponse) -> usize {
    4 * 8 + 1 + 4 + inv.result.len()
}

/// `invocation_id: u64, sandbox: u64, duration_us: u64, total_us: u64,
/// flags: u8 (bit 0 cold, bit 1 error, bit 2 affinity hit), result: bytes`, then when bit 1 is
/// set `kind: u16, message: bytes, error_type: opt, stack_trace: opt`.
pub(super) fn encode_invoked(inv: &InvokeResponse, body: &mut Vec<u8>) {
    body.extend_from_slice(&inv.invocation_id.to_le_bytes());
    body.extend_from_slice(&inv.sandbox.to_le_bytes());
    body.extend_from_slice(&inv.duration_us.to_le_bytes());
    body.extend_from_slice(&inv.total_us.to_le_bytes());
    let mut flags = 0;
    if inv.cold {
        flags |= FLAG_COLD;
    }
    if inv.error.is_some() {
        flags |= FLAG_ERROR;
    }
    if inv.affinity_hit {
        flags |= FLAG_AFFINITY_HIT;
    }
    body.push(flags);
    put_bytes(body, &inv.result);
    if let Some(err) = &inv.error {
        body.extend_from_slice(&err.kind.code().to_le_bytes());
        put_bytes(body, err.message.as_bytes());
        put_opt(body, err.error_type.as_deref());
        put_opt(body, err.stack_trace.as_deref());
    }
}

/// The inverse of [`encode_invoked`].
pub(super) fn decode_invoked(body: &[u8]) -> Result<InvokeResponse, DecodeError> {
    let mut r = Reader::new(body);
    let invocation_id = r.u64("invocation id")?;
    let sandbox = r.u64("sandbox")?;
    let duration_us = r.u64("duration")?;
    let total_us = r.u64("total time")?;
    let flags = r.u8("flags")?;
    if flags & !(FLAG_COLD | FLAG_ERROR | FLAG_AFFINITY_HIT) != 0 {
        return Err(DecodeError::BadFlags { flags });
    }
    let result = r.bytes("result")?.to_vec();
    let error = if flags & FLAG_ERROR != 0 {
        let code = r.u16("error kind")?;
        let kind = ErrorKind::from_code(code).ok_or(DecodeError::BadErrorKind { code })?;
        Some(ErrorBody {
            kind,
            message: r.string("error message")?,
            error_type: r.opt_string("error type")?,
            stack_trace: r.opt_string("stack trace")?,
        })
    } else {
        None
    };
    r.end()?;
    Ok(InvokeResponse {
        invocation_id,
        result,
        error,
        cold: flags & FLAG_COLD != 0,
        sandbox,
        duration_us,
        total_us,
        affinity_hit: flags & FLAG_AFFINITY_HIT != 0,
    })
}

pub(super) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("field over 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_opt(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => {
            out.push(1);
            put_bytes(out, text.as_bytes());
        }
        None => out.push(0),
    }
}

/// A cursor over a body; every read is checked against what remains.
pub(super) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(body: &'a [u8]) -> Reader<'a> {
        Reader { rest: body }
    }

    fn take(&mut self, field: &'static str, n: u64) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() as u64 {
            return Err(DecodeError::Truncated {
                field,
                needed: n,
                remaining: self.rest.len(),
            });
        }
        let (head, tail) = self.rest.split_at(n as usize);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(field, 1)?[0])
    }

    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.take(field, 2)?.try_into().unwrap()))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(field, 4)?.try_into().unwrap()))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(field, 8)?.try_into().unwrap()))
    }

    fn bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let len = self.u32(field)?;
        self.take(field, u64::from(len))
    }

    fn string(&mut self, field: &'static str) -> Result<String, DecodeError> {
        let bytes = self.bytes(field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8 { field })
    }

    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        match self.u8(field)? {
            0 => Ok(None),
            1 => self.string(field).map(Some),
            flags => Err(DecodeError::BadFlags { flags }),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    pub(super) fn end(&self) -> Result<(), DecodeError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.rest.len(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_past_the_end_are_refused_without_allocating() {
        // function name claims 4 GiB - 1
        let mut body = u32::MAX.to_le_bytes().to_vec();
        body.extend_from_slice(b"abc");
        assert!(matches!(
            decode_invoke(&body),
            Err(DecodeError::Truncated {
                field: "function name",
                needed: 4294967295,
                remaining: 3
            })
        ));
        // payload length one past the end
        let mut body = Vec::new();
        put_bytes(&mut body, b"hello");
        body.extend_from_slice(&4u32.to_le_bytes());
        body.extend_from_slice(b"abc");
        assert!(matches!(
            decode_invoke(&body),
            Err(DecodeError::Truncated {
                field: "payload",
                needed: 4,
                remaining: 3
            })
        ));
    }

    #[test]
    fn optional_strings_must_be_0_or_1() {
        let mut body = Vec::new();
        put_opt(&mut body, Some("x"));
        put_opt(&mut body, None);
        let mut r = Reader::new(&body);
        assert_eq!(r.opt_string("a").unwrap().as_deref(), Some("x"));
        assert_eq!(r.opt_string("b").unwrap(), None);
        r.end().unwrap();
        assert!(matches!(
            Reader::new(&[2]).opt_string("c"),
            Err(DecodeError::BadFlags { flags: 2 })
        ));
    }
}
