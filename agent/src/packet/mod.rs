//! packet stage.
