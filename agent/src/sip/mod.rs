//! SIP stage: the tolerant zero-copy message framer ([`SipMessage`]),
//! header helpers, URIs ([`uri`]: our own parser, since rsip 0.4 rejects
//! IPv6 references), TCP stream framing ([`framing`]) and transactions
//! ([`transaction`]).

pub mod byte_range;
pub mod framing;
pub mod headers;
pub mod malformed;
pub mod message;
pub mod method;
pub mod name_addr;
pub mod transaction;
pub mod uri;
pub mod via;

pub use byte_range::ByteRange;
pub use malformed::{MalformedCounts, MalformedReason};
pub use message::{CSeq, Framing, SipMessage, StartLine};
pub use method::Method;
pub use transaction::{
    MessageRecord, TimeoutCause, Transaction, TransactionConfig, TransactionId, TransactionKey,
    TransactionState, TransactionStats, TransactionTable,
};
pub use uri::SipUri;
