//! TODO(skeleton): filled in by the owner of `sandbox`.
