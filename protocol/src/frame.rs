//! Serial link framing: postcard's own COBS (`to_slice_cobs` / `CobsAccumulator`) around
//! the envelope bytes and a CRC-32 of them.
//!
//! On the wire a frame is `COBS(postcard(RawFrame { body, crc })) 0x00`, where `body` is the
//! postcard envelope. COBS gives every frame an unambiguous end (the zero byte), so after
//! line noise the decoder resynchronises at the next delimiter; the CRC catches noise that
//! COBS alone would turn into a wrong but well-formed message.
//!
//! This module is pure: [`FrameDecoder::feed`] takes bytes and returns what it decoded; the
//! reader loop around it lives with the device code.

use postcard::accumulator::{CobsAccumulator, FeedResult};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::envelope::{self, DecodeError, EncodeError, Envelope};

/// CRC-32/ISO-HDLC, the Ethernet and zlib CRC.
pub const CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// What goes inside the COBS encoding.
#[derive(Serialize, Deserialize)]
struct RawFrame<'a> {
    #[serde(borrow)]
    body: &'a [u8],
    crc: [u8; 4],
}

/// Encodes `env` as one frame into `out`, using `scratch` for the envelope bytes.
/// Returns the frame, delimiter included.
pub fn encode<'o, T: Serialize>(
    env: &Envelope<T>,
    scratch: &mut [u8],
    out: &'o mut [u8],
) -> Result<&'o mut [u8], EncodeError> {
    let body = envelope::encode_to_slice(env, scratch)?;
    let crc = CRC.checksum(body).to_le_bytes();
    let capacity = out.len();
    postcard::to_slice_cobs(&RawFrame { body, crc }, out)
        .map_err(|_| EncodeError::BufferFull { capacity })
}

/// Encodes `env` as one frame into a new vector, delimiter included.
#[cfg(feature = "alloc")]
pub fn encode_to_vec<T: Serialize>(env: &Envelope<T>) -> alloc::vec::Vec<u8> {
    let body = envelope::encode_to_vec(env);
    let crc = CRC.checksum(&body).to_le_bytes();
    postcard::to_allocvec_cobs(&RawFrame { body: &body, crc }).unwrap_or_default()
}

/// Why a frame was dropped. The decoder always goes on with the next frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// More bytes than the decoder's buffer before a delimiter: noise or a lost delimiter.
    #[error("frame longer than the {0}-byte buffer; skipped to the next delimiter")]
    Overfull(usize),
    /// The COBS structure or the frame layout is broken.
    #[error("corrupt frame (bad COBS or layout)")]
    Corrupt,
    /// The CRC does not match: line noise.
    #[error("CRC mismatch (line noise)")]
    BadCrc,
    /// The CRC matched but the envelope did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Turns a byte stream into messages. `N` is the largest frame it accepts, in bytes.
pub struct FrameDecoder<const N: usize> {
    acc: CobsAccumulator<N>,
}

impl<const N: usize> Default for FrameDecoder<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameDecoder<N> {
    /// A decoder with an empty buffer.
    pub const fn new() -> Self {
        FrameDecoder {
            acc: CobsAccumulator::new(),
        }
    }

    /// Feeds `input` and calls `on_frame` for every frame that ends in it, good or bad.
    /// Bytes of an unfinished frame are kept for the next call.
    pub fn feed<T: DeserializeOwned>(
        &mut self,
        mut input: &[u8],
        mut on_frame: impl FnMut(Result<Envelope<T>, FrameError>),
    ) {
        while !input.is_empty() {
            input = match self.acc.feed_ref::<RawFrame<'_>>(input) {
                FeedResult::Consumed => break,
                FeedResult::OverFull(rest) => {
                    on_frame(Err(FrameError::Overfull(N)));
                    rest
                }
                FeedResult::DeserError(rest) => {
                    on_frame(Err(FrameError::Corrupt));
                    rest
                }
                FeedResult::Success { data, remaining } => {
                    on_frame(check(&data));
                    remaining
                }
            };
        }
    }
}

fn check<T: DeserializeOwned>(frame: &RawFrame<'_>) -> Result<Envelope<T>, FrameError> {
    if CRC.checksum(frame.body).to_le_bytes() != frame.crc {
        return Err(FrameError::BadCrc);
    }
    Ok(envelope::decode(frame.body, frame.body.len())?)
}
