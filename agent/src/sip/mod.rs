//! sip stage.
