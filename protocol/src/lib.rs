//! Floorhand's wire contract: every message between the OMS, the agent and the picker's
//! terminal, encoded as compact postcard bytes.
//!
//! This crate is the contract and nothing else: types, encode/decode, size limits and
//! serial framing. It does no I/O and holds no business rules.
//!
//! - [`envelope`]: every message travels as `version, msg_id, body`; an unknown version is
//!   rejected before the body is read, because postcard is not self-describing.
//! - [`oms`] (feature `alloc`): OMS → agent ([`oms::Down`]) and agent → OMS ([`oms::Up`]).
//! - [`link`]: agent ↔ terminal messages, `heapless` only, so firmware needs no allocator.
//! - [`frame`]: COBS framing (postcard's own) plus a CRC-32 for the serial link.
//! - [`topics`] (feature `alloc`): the MQTT topic names, defined once.
//!
//! Enum variants are only ever appended: a variant's index is its wire tag.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod envelope;
pub mod frame;
pub mod limits;
pub mod link;

#[cfg(feature = "alloc")]
pub mod examples;
#[cfg(feature = "alloc")]
pub mod oms;
#[cfg(feature = "alloc")]
pub mod topics;

pub use envelope::{DecodeError, EncodeError, Envelope, PROTOCOL_VERSION};
