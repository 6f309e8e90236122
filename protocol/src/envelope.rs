//! The envelope every message travels in: protocol version, message id, body.
//!
//! postcard is not self-describing: bytes written by another protocol version would decode
//! into wrong values instead of failing. The version byte comes first and is checked before
//! anything else is read, so an unknown version is a clear error.

use serde::{Deserialize, Serialize};

/// The protocol version this crate speaks. Bumped only for a change that is not an
/// appended enum variant.
pub const PROTOCOL_VERSION: u8 = 2;

/// A message with its version and id.
///
/// `msg_id` identifies the message. On a down topic it is the down seq of a sequenced
/// message (0 for control messages); the agent uses an event's `seq` as the id of the
/// event's envelope, and a per-connection counter for other up messages; on the serial
/// link it tells frames apart in logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Always [`PROTOCOL_VERSION`] when built with [`Envelope::new`].
    pub version: u8,
    /// Sender-assigned id, unique per sender.
    pub msg_id: u64,
    /// The message itself.
    pub body: T,
}

impl<T> Envelope<T> {
    /// Wraps `body` with the current protocol version.
    pub fn new(msg_id: u64, body: T) -> Self {
        Envelope {
            version: PROTOCOL_VERSION,
            msg_id,
            body,
        }
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The output buffer is too small for the message.
    #[error("message does not fit in a {capacity}-byte buffer")]
    BufferFull {
        /// Size of the buffer that was offered.
        capacity: usize,
    },
    /// The encoded message is larger than the receiver accepts.
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The message breaks a protocol limit (too many tasks, a text too long).
    #[error("message breaks a protocol limit: {0}")]
    Limit(#[from] LimitError),
}

/// A protocol limit that a message breaks. Checked by senders and receivers alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// A list is longer than allowed.
    #[error("{what} has {len} entries, at most {max} allowed")]
    TooMany {
        /// What the list is.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A text field is longer than allowed.
    #[error("{what} is {len} bytes long, at most {max} allowed")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why received bytes were not accepted as a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Nothing was received.
    #[error("empty message")]
    Empty,
    /// The message is over the size limit; it was not decoded.
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Received size.
        size: usize,
        /// The limit it exceeds.
        limit: usize,
    },
    /// The sender speaks another protocol version.
    #[error("protocol version {got} is not supported (this side speaks version {supported})")]
    UnsupportedVersion {
        /// Version byte received.
        got: u8,
        /// Version this side speaks.
        supported: u8,
    },
    /// The bytes are not a valid message of the expected type.
    #[error("malformed message: {0}")]
    Malformed(postcard::Error),
    /// A valid message was followed by extra bytes, which means sender and receiver
    /// disagree about the format.
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
    /// The message decoded but breaks a protocol limit.
    #[error("message breaks a protocol limit: {0}")]
    Limit(#[from] LimitError),
}

/// Encodes `env` into `buf`, returning the used part.
pub fn encode_to_slice<'b, T: Serialize>(
    env: &Envelope<T>,
    buf: &'b mut [u8],
) -> Result<&'b mut [u8], EncodeError> {
    let capacity = buf.len();
    postcard::to_slice(env, buf).map_err(|_| EncodeError::BufferFull { capacity })
}

/// Encodes `env` into a new vector.
#[cfg(feature = "alloc")]
pub fn encode_to_vec<T: Serialize>(env: &Envelope<T>) -> alloc::vec::Vec<u8> {
    // Serialising into a Vec only fails on a serde error, which our types never raise.
    postcard::to_allocvec(env).unwrap_or_default()
}

/// Decodes an envelope from exactly `bytes`, refusing more than `limit` bytes, another
/// protocol version, malformed bodies and trailing bytes.
pub fn decode<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    limit: usize,
) -> Result<Envelope<T>, DecodeError> {
    check_header(bytes, limit)?;
    let (env, rest) =
        postcard::take_from_bytes::<Envelope<T>>(bytes).map_err(DecodeError::Malformed)?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(env)
}

/// Reads the message id of an envelope whose body may not decode, so that a rejection
/// can name the message it rejects. `None` when even the header is unreadable.
pub fn peek_msg_id(bytes: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<(u8, u64)>(bytes)
        .ok()
        .map(|((_, id), _)| id)
}

fn check_header(bytes: &[u8], limit: usize) -> Result<(), DecodeError> {
    if bytes.len() > limit {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit,
        });
    }
    match bytes.first() {
        None => Err(DecodeError::Empty),
        Some(&PROTOCOL_VERSION) => Ok(()),
        Some(&got) => Err(DecodeError::UnsupportedVersion {
            got,
            supported: PROTOCOL_VERSION,
        }),
    }
}
