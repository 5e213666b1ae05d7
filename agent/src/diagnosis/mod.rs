//! diagnosis stage.
