//! TODO(skeleton): filled in by the owner of `client`.
