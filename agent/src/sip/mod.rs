//! SIP stage: the tolerant zero-copy message framer ([`SipMessage`]),
//! header helpers, URIs ([`uri`]: our own parser, since rsip 0.4 rejects
//! IPv6 references), TCP stream framing ([`framing`]) and transactions
//! ([`transaction`]).
//!
//! This is the one SIP grammar: Via ([`via`]), name-addr and Contact
//! ([`name_addr`], `contact`), host-port ([`HostPort`]) and the transport
//! token ([`SipTransport`]) are read here and nowhere else, so every
//! analysis reads a message the same way.

pub(crate) mod byte_range;
pub(crate) mod contact;
pub(crate) mod framing;
pub(crate) mod headers;
pub(crate) mod host_port;
pub(crate) mod malformed;
pub(crate) mod message;
pub(crate) mod method;
pub(crate) mod name_addr;
pub(crate) mod transaction;
pub(crate) mod transport;
pub(crate) mod uri;
pub(crate) mod via;

pub use byte_range::ByteRange;
pub(crate) use contact::Contact;
pub use host_port::HostPort;
pub use malformed::{MalformedCounts, MalformedReason};
pub use message::{CSeq, Framing, SipMessage, StartLine};
pub use method::Method;
pub use transaction::{
    MessageRecord, TimeoutCause, Transaction, TransactionConfig, TransactionId, TransactionKey,
    TransactionState, TransactionStats, TransactionTable,
};
pub use transport::SipTransport;
pub use uri::SipUri;
pub use via::{Rport, Via};
