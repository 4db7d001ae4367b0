//! Errors a handler returns, as the runtime reports them.

use std::fmt;

/// A function error: becomes an ERROR record
/// `{"errorType", "errorMessage", "stackTrace"}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    pub error_type: String,
    pub message: String,
    pub stack_trace: Vec<String>,
}

impl HandlerError {
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> HandlerError {
        HandlerError {
            error_type: error_type.into(),
            message: message.into(),
            stack_trace: Vec::new(),
        }
    }

    /// From any error: a `HandlerError` inside keeps its type; anything
    /// else is errorType `Error`, its `source()` chain as the stack trace.
    pub fn from_error(err: &(dyn std::error::Error + 'static)) -> HandlerError {
        if let Some(inner) = err.downcast_ref::<HandlerError>() {
            return inner.clone();
        }
        let mut stack_trace = Vec::new();
        let mut source = err.source();
        while let Some(cause) = source {
            stack_trace.push(format!("caused by: {cause}"));
            source = cause.source();
        }
        HandlerError {
            error_type: "Error".into(),
            message: err.to_string(),
            stack_trace,
        }
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        sprout::ring::function_error_body(&self.error_type, &self.message, &self.stack_trace)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for HandlerError {}

impl From<Box<dyn std::error::Error>> for HandlerError {
    fn from(err: Box<dyn std::error::Error>) -> HandlerError {
        HandlerError::from_error(err.as_ref())
    }
}

impl From<Box<dyn std::error::Error + Send + Sync>> for HandlerError {
    fn from(err: Box<dyn std::error::Error + Send + Sync>) -> HandlerError {
        HandlerError::from_error(err.as_ref())
    }
}

impl From<std::io::Error> for HandlerError {
    fn from(err: std::io::Error) -> HandlerError {
        HandlerError::from_error(&err)
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> HandlerError {
        HandlerError::from_error(&err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_handler_errors_keep_their_type() {
        let boxed: Box<dyn std::error::Error> =
            Box::new(HandlerError::new("Validation", "no name"));
        let err = HandlerError::from(boxed);
        assert_eq!(err, HandlerError::new("Validation", "no name"));
    }

    #[test]
    fn other_errors_become_type_error_with_their_causes() {
        let io = std::io::Error::other(HandlerError::new("Inner", "disk"));
        let err = HandlerError::from(io);
        assert_eq!(err.error_type, "Error");
        assert_eq!(err.message, "Inner: disk");
        let (kind, message, _) = sprout::ring::parse_function_error(&err.body());
        assert_eq!((kind.as_str(), message.as_str()), ("Error", "Inner: disk"));
    }
}
