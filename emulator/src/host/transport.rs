//! Framing between pyflare and the isolate host, mirror of
//! `pyodide-runtime/src/transport.mjs`. Nothing else knows the byte layout.
//!
//! A frame is a 4-byte big-endian length of what follows, then one kind byte:
//! kind 0 carries the UTF-8 JSON of one protocol message; kind 1 carries a
//! 4-byte big-endian stream id and then raw body bytes; kind 2 is kind 1 for
//! the last chunk of a stream (no `body_end` follows), so a small body
//! travels as one frame. Bodies therefore never travel as JSON or base64.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Kind byte of a JSON message frame.
pub const KIND_JSON: u8 = 0;
/// Kind byte of a body chunk frame.
pub const KIND_CHUNK: u8 = 1;
/// Kind byte of the chunk frame that ends its stream.
pub const KIND_LAST_CHUNK: u8 = 2;
/// Largest value of the length field either side accepts.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Body chunks are cut to at most this many bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// One decoded frame.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A protocol message, still as JSON text.
    Json(Bytes),
    /// A piece of the body of stream `stream`; `last` ends the stream.
    Chunk {
        stream: u32,
        data: Bytes,
        last: bool,
    },
}

/// Errors in the byte stream; any of them ends the connection.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("invalid frame length {0}")]
    Length(usize),
    #[error("unknown frame kind {0}")]
    Kind(u8),
    #[error("chunk frame without a stream id")]
    ShortChunk,
}

/// Encodes a JSON message frame.
pub fn encode_json(json: &[u8], out: &mut BytesMut) {
    out.reserve(5 + json.len());
    out.put_u32((1 + json.len()) as u32);
    out.put_u8(KIND_JSON);
    out.put_slice(json);
}

/// Encodes the header of a chunk frame; `len` body bytes follow it. A
/// `last` chunk ends its stream.
pub fn encode_chunk_header(stream: u32, len: usize, last: bool, out: &mut BytesMut) {
    out.reserve(9);
    out.put_u32((5 + len) as u32);
    out.put_u8(if last { KIND_LAST_CHUNK } else { KIND_CHUNK });
    out.put_u32(stream);
}

/// Takes one whole frame off the front of `buf`, if there is one.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if !(1..=MAX_FRAME_BYTES).contains(&len) {
        return Err(FrameError::Length(len));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut frame = buf.split_to(len).freeze();
    let kind = frame.get_u8();
    match kind {
        KIND_JSON => Ok(Some(Frame::Json(frame))),
        KIND_CHUNK | KIND_LAST_CHUNK => {
            if frame.len() < 4 {
                return Err(FrameError::ShortChunk);
            }
            let stream = frame.get_u32();
            Ok(Some(Frame::Chunk {
                stream,
                data: frame,
                last: kind == KIND_LAST_CHUNK,
            }))
        }
        other => Err(FrameError::Kind(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_chunk_frames_round_trip_across_split_reads() {
        let mut wire = BytesMut::new();
        encode_json(br#"{"type":"ping","seq":1}"#, &mut wire);
        encode_chunk_header(7, 3, false, &mut wire);
        wire.put_slice(&[0, 255, 10]);
        let last_at = wire.len();
        encode_chunk_header(7, 1, true, &mut wire);
        wire.put_slice(&[42]);
        assert_eq!(
            wire[last_at..],
            [0, 0, 0, 6, KIND_LAST_CHUNK, 0, 0, 0, 7, 42]
        );
        let all = wire.freeze();

        // Feed one byte at a time: frames come out only when whole.
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(frame) = decode(&mut buf).unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Json(Bytes::from_static(br#"{"type":"ping","seq":1}"#)),
                Frame::Chunk {
                    stream: 7,
                    data: Bytes::from_static(&[0, 255, 10]),
                    last: false,
                },
                Frame::Chunk {
                    stream: 7,
                    data: Bytes::from_static(&[42]),
                    last: true,
                },
            ]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_unknown_frames_are_errors() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0][..]);
        assert_eq!(decode(&mut buf), Err(FrameError::Length(0xffff_ffff)));
        let mut buf = BytesMut::from(&[0, 0, 0, 1, 9][..]);
        assert_eq!(decode(&mut buf), Err(FrameError::Kind(9)));
        let mut buf = BytesMut::from(&[0, 0, 0, 3, 1, 0, 0][..]);
        assert_eq!(decode(&mut buf), Err(FrameError::ShortChunk));
    }
}
