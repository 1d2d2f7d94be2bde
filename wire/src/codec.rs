//! The one serialization boundary: bincode 2.0.1 behind length-delimited frames.
//!
//! A frame is `length: u32 big-endian` followed by `length` bytes of body; the body
//! is `version: u16 big-endian` followed by the bincode encoding of one message.
//! Nothing outside this module names bincode.
//!
//! Decoding untrusted bytes never panics, never allocates more than
//! [`MAX_FRAME_BYTES`] (the length is checked before the buffer is allocated, and
//! bincode's own limit bounds every length prefix inside), and turns an unknown
//! version or message into a typed [`DecodeError`].

use crate::{MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame body. The largest real message, a relayed answer carrying a
/// grant and a receipt, is about 3 KiB; 64 KiB leaves room for growth while
/// bounding the memory a hostile peer can make us hold per stream (500 open
/// streams cost at most 32 MiB).
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

const LEN_PREFIX: usize = 4;
const VERSION_PREFIX: usize = 2;

fn config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_big_endian()
        .with_limit::<MAX_FRAME_BYTES>()
}

/// Why bytes could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame is truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("protocol version {0} is not supported (supported: {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} unexpected bytes after the message")]
    TrailingBytes(usize),
}

/// Why a message could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("message could not be encoded: {0}")]
    Encode(String),
}

/// Reading or writing frames on a stream.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes a message into a frame body (version + bincode), at the current version.
pub fn encode_body<M: Serialize>(message: &M) -> Result<Vec<u8>, EncodeError> {
    let mut body = PROTOCOL_VERSION.to_be_bytes().to_vec();
    let encoded = bincode::serde::encode_to_vec(message, config())
        .map_err(|e| EncodeError::Encode(e.to_string()))?;
    body.extend_from_slice(&encoded);
    if body.len() > MAX_FRAME_BYTES {
        return Err(EncodeError::TooLarge {
            len: body.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(body)
}

/// Encodes a message into a whole frame (length prefix + body).
pub fn encode_frame<M: Serialize>(message: &M) -> Result<Vec<u8>, EncodeError> {
    let body = encode_body(message)?;
    let mut frame = Vec::with_capacity(LEN_PREFIX + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes a frame body. The whole body must be one message.
pub fn decode_body<M: DeserializeOwned>(body: &[u8]) -> Result<M, DecodeError> {
    if body.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len: body.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    let version = body_version(body)?;
    if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let rest = &body[VERSION_PREFIX..];
    let (message, used) = bincode::serde::decode_from_slice::<M, _>(rest, config())
        .map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if used != rest.len() {
        return Err(DecodeError::TrailingBytes(rest.len() - used));
    }
    Ok(message)
}

/// The protocol version a frame body declares.
pub fn body_version(body: &[u8]) -> Result<u16, DecodeError> {
    match body {
        [a, b, ..] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(DecodeError::Truncated {
            needed: VERSION_PREFIX,
            got: body.len(),
        }),
    }
}

/// Splits one frame off the front of `buf`: `Ok(Some((body, consumed)))` if a whole
/// frame is there, `Ok(None)` if more bytes are needed, an error if the length
/// prefix exceeds the limit.
pub fn split_frame(buf: &[u8]) -> Result<Option<(&[u8], usize)>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(buf
        .get(LEN_PREFIX..LEN_PREFIX + len)
        .map(|body| (body, LEN_PREFIX + len)))
}

/// Decodes exactly one whole frame (length prefix + body, nothing after).
pub fn decode_frame<M: DeserializeOwned>(frame: &[u8]) -> Result<M, DecodeError> {
    match split_frame(frame)? {
        Some((body, used)) if used == frame.len() => decode_body(body),
        Some((_, used)) => Err(DecodeError::TrailingBytes(frame.len() - used)),
        None => {
            let needed = frame
                .get(..LEN_PREFIX)
                .map(|p| LEN_PREFIX + u32::from_be_bytes([p[0], p[1], p[2], p[3]]) as usize)
                .unwrap_or(LEN_PREFIX);
            Err(DecodeError::Truncated {
                needed,
                got: frame.len(),
            })
        }
    }
}

/// Reads one frame body from a stream. `Ok(None)` on a clean end of stream before
/// the first byte; a stream that ends inside a frame is `Truncated`.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; LEN_PREFIX];
    let mut got = 0;
    while got < LEN_PREFIX {
        let n = r.read(&mut prefix[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(DecodeError::Truncated {
                needed: LEN_PREFIX,
                got,
            }
            .into());
        }
        got += n;
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge {
            len,
            max: MAX_FRAME_BYTES,
        }
        .into());
    }
    let mut body = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = r.read(&mut body[filled..]).await?;
        if n == 0 {
            return Err(DecodeError::Truncated {
                needed: LEN_PREFIX + len,
                got: LEN_PREFIX + filled,
            }
            .into());
        }
        filled += n;
    }
    Ok(Some(body))
}

/// Reads and decodes one message; end of stream is `Truncated`.
pub async fn read_message<M: DeserializeOwned, R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<M, FrameError> {
    let body = read_frame(r).await?.ok_or(DecodeError::Truncated {
        needed: LEN_PREFIX,
        got: 0,
    })?;
    Ok(decode_body(&body)?)
}

/// Encodes and writes one message as a frame.
pub async fn write_message<M: Serialize, W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &M,
) -> Result<(), FrameError> {
    let frame = encode_frame(message)?;
    w.write_all(&frame).await?;
    Ok(())
}
