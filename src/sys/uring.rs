//! TODO(skeleton).
