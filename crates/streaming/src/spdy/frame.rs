//! SPDY/3.1 frames and their wire format (draft-mbelshe-httpbis-spdy-00 with the 3.1
//! session flow-control amendment): an 8-byte header, then the payload.
//!
//! ```text
//! control: |1| version(15) | type(16) | flags(8) | length(24) | payload
//! data:    |0| stream-id(31)          | flags(8) | length(24) | payload
//! ```
//!
//! Header blocks (SYN_STREAM, SYN_REPLY, HEADERS) are zlib streams primed with the SPDY/3
//! dictionary, one compression context per direction for the whole connection: a
//! [`FrameEncoder`] and a [`FrameDecoder`] each own theirs, so one connection needs exactly one
//! of each, used in frame order.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::DICTIONARY;
use crate::Error;

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;

/// Control frame types.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// FLAG_FIN on data, SYN_STREAM, SYN_REPLY and HEADERS frames.
pub const FLAG_FIN: u8 = 0x01;
/// FLAG_UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// FLAG_SETTINGS_CLEAR_SETTINGS on SETTINGS.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Largest payload a frame can carry (the length field has 24 bits).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// Largest decompressed header block accepted (a guard against zlib bombs).
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const UNSUPPORTED_VERSION: u32 = 4;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

/// SETTINGS identifiers used here.
pub mod settings {
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
}

/// A header block: lower-case names in order; a value holding several values separates them
/// with NUL, as on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Add a header; the name is lower-cased (SPDY requires it).
    pub fn with(mut self, name: &str, value: &str) -> Headers {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// The first value of `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A SPDY/3.1 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    /// A control frame of a type this implementation does not know (e.g. CREDENTIAL): the
    /// specification says to ignore it.
    Unknown {
        kind: u16,
        flags: u8,
        payload: Bytes,
    },
}

fn protocol(message: impl Into<String>) -> Error {
    Error::Protocol(message.into())
}

/// The writing half of a connection's framing: owns the header compression context.
pub struct FrameEncoder {
    zlib: Compress,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameEncoder {
    pub fn new() -> FrameEncoder {
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(&DICTIONARY)
            .expect("a fresh zlib stream accepts a dictionary");
        FrameEncoder { zlib }
    }

    /// Append the wire form of `frame` to `dst`.
    pub fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), Error> {
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(protocol("data frame too large"));
                }
                dst.put_u32(stream_id & 0x7fff_ffff);
                put_flags_length(dst, if *fin { FLAG_FIN } else { 0 }, data.len());
                dst.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.compress(headers)?;
                let mut flags = 0;
                if *fin {
                    flags |= FLAG_FIN;
                }
                if *unidirectional {
                    flags |= FLAG_UNIDIRECTIONAL;
                }
                control_header(dst, kind::SYN_STREAM, flags, 10 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(associated_to & 0x7fff_ffff);
                dst.put_u8((priority & 0x07) << 5);
                dst.put_u8(*slot);
                dst.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.compress(headers)?;
                let frame_kind = if matches!(frame, Frame::SynReply { .. }) {
                    kind::SYN_REPLY
                } else {
                    kind::HEADERS
                };
                control_header(
                    dst,
                    frame_kind,
                    if *fin { FLAG_FIN } else { 0 },
                    4 + block.len(),
                )?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(dst, kind::RST_STREAM, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                control_header(
                    dst,
                    kind::SETTINGS,
                    if *clear { FLAG_CLEAR_SETTINGS } else { 0 },
                    4 + 8 * entries.len(),
                )?;
                dst.put_u32(entries.len() as u32);
                for e in entries {
                    dst.put_u32((u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff));
                    dst.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                control_header(dst, kind::PING, 0, 4)?;
                dst.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(dst, kind::GOAWAY, 0, 8)?;
                dst.put_u32(last_good_stream_id & 0x7fff_ffff);
                dst.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(dst, kind::WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(delta & 0x7fff_ffff);
            }
            Frame::Unknown {
                kind,
                flags,
                payload,
            } => {
                control_header(dst, *kind, *flags, payload.len())?;
                dst.put_slice(payload);
            }
        }
        Ok(())
    }

    /// The compressed form of a header block, ending with a zlib sync flush so the peer can
    /// decode it without the frames that follow.
    fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, Error> {
        let raw = header_block(headers)?;
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.zlib.total_in();
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let done = (self.zlib.total_in() - start) as usize;
            self.zlib
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Compression(e.to_string()))?;
            let done = (self.zlib.total_in() - start) as usize;
            // The flush is complete once all input is in and zlib left output space unused.
            if done == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The uncompressed header block: a count, then length-prefixed names and values.
pub fn header_block(headers: &Headers) -> Result<Vec<u8>, Error> {
    let mut raw = Vec::new();
    raw.put_u32(headers.0.len() as u32);
    for (name, value) in &headers.0 {
        if name.is_empty() || name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(protocol(format!("invalid header name {name:?}")));
        }
        raw.put_u32(name.len() as u32);
        raw.put_slice(name.as_bytes());
        raw.put_u32(value.len() as u32);
        raw.put_slice(value.as_bytes());
    }
    Ok(raw)
}

fn control_header(dst: &mut BytesMut, kind: u16, flags: u8, length: usize) -> Result<(), Error> {
    if length > MAX_PAYLOAD {
        return Err(protocol("control frame too large"));
    }
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(kind);
    put_flags_length(dst, flags, length);
    Ok(())
}

fn put_flags_length(dst: &mut BytesMut, flags: u8, length: usize) {
    dst.put_u32((u32::from(flags) << 24) | (length as u32 & 0x00ff_ffff));
}

/// The reading half of a connection's framing: owns the header decompression context.
pub struct FrameDecoder {
    zlib: Decompress,
    /// Largest data payload accepted (a frame larger than this is a protocol error).
    max_data: usize,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    pub fn new() -> FrameDecoder {
        FrameDecoder {
            zlib: Decompress::new(true),
            max_data: MAX_PAYLOAD,
        }
    }

    /// Take one complete frame off the front of `src`, or `None` when more bytes are needed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, Error> {
        if src.len() < 8 {
            return Ok(None);
        }
        let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        let flags = src[4];
        let length = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
        if word & 0x8000_0000 == 0 && length > self.max_data {
            return Err(protocol(format!(
                "data frame of {length} bytes is too large"
            )));
        }
        if src.len() < 8 + length {
            src.reserve(8 + length - src.len());
            return Ok(None);
        }
        src.advance(8);
        let mut payload = src.split_to(length).freeze();
        if word & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: word & 0x7fff_ffff,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((word >> 16) & 0x7fff) as u16;
        let frame_kind = (word & 0xffff) as u16;
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let need = |n: usize| -> Result<(), Error> {
            if length < n {
                Err(protocol(format!(
                    "control frame {frame_kind} too short ({length} bytes)"
                )))
            } else {
                Ok(())
            }
        };
        let fin = flags & FLAG_FIN != 0;
        let frame = match frame_kind {
            kind::SYN_STREAM => {
                need(10)?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let associated_to = payload.get_u32() & 0x7fff_ffff;
                let priority = payload.get_u8() >> 5;
                let slot = payload.get_u8();
                let headers = self.decompress(&payload)?;
                if stream_id == 0 {
                    return Err(protocol("SYN_STREAM with stream id 0"));
                }
                Frame::SynStream {
                    stream_id,
                    associated_to,
                    priority,
                    slot,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers,
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                need(4)?;
                let stream_id = payload.get_u32() & 0x7fff_ffff;
                let headers = self.decompress(&payload)?;
                if frame_kind == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        headers,
                    }
                }
            }
            kind::RST_STREAM => {
                need(8)?;
                Frame::RstStream {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    status: payload.get_u32(),
                }
            }
            kind::SETTINGS => {
                need(4)?;
                let count = payload.get_u32() as usize;
                if payload.remaining() < count.saturating_mul(8) {
                    return Err(protocol("SETTINGS frame shorter than its entry count"));
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = payload.get_u32();
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: payload.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            kind::PING => {
                need(4)?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            kind::GOAWAY => {
                need(4)?;
                let last_good_stream_id = payload.get_u32() & 0x7fff_ffff;
                // SPDY/2 GOAWAY frames had no status; SPDY/3 ones do.
                let status = if payload.remaining() >= 4 {
                    payload.get_u32()
                } else {
                    goaway::OK
                };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            kind::WINDOW_UPDATE => {
                need(8)?;
                Frame::WindowUpdate {
                    stream_id: payload.get_u32() & 0x7fff_ffff,
                    delta: payload.get_u32() & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown {
                kind: other,
                flags,
                payload,
            },
        };
        Ok(Some(frame))
    }

    /// Decompress one header block (the continuation of this direction's zlib stream).
    fn decompress(&mut self, block: &[u8]) -> Result<Headers, Error> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let start = self.zlib.total_in();
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(protocol("header block too large"));
                }
                out.reserve(out.len().max(1024));
            }
            let (in_before, out_before) = (self.zlib.total_in(), out.len());
            let done = (in_before - start) as usize;
            match self
                .zlib
                .decompress_vec(&block[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| Error::Compression(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(Error::Compression(e.to_string())),
            }
            let done = (self.zlib.total_in() - start) as usize;
            if done == block.len() && out.len() < out.capacity() {
                break;
            }
            if self.zlib.total_in() == in_before && out.len() == out_before {
                if done == block.len() {
                    break;
                }
                return Err(protocol("the compressed header block does not decode"));
            }
        }
        parse_header_block(&out)
    }
}

/// Parse an uncompressed header block.
pub fn parse_header_block(mut raw: &[u8]) -> Result<Headers, Error> {
    fn take<'a>(raw: &mut &'a [u8], n: usize) -> Result<&'a [u8], Error> {
        if raw.len() < n {
            return Err(protocol("truncated header block"));
        }
        let (head, rest) = raw.split_at(n);
        *raw = rest;
        Ok(head)
    }
    fn length(raw: &mut &[u8]) -> Result<usize, Error> {
        let b = take(raw, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    let count = length(&mut raw)?;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = length(&mut raw)?;
        let name = String::from_utf8_lossy(take(&mut raw, n)?).to_ascii_lowercase();
        let n = length(&mut raw)?;
        let value = String::from_utf8_lossy(take(&mut raw, n)?).into_owned();
        headers.push((name, value));
    }
    if !raw.is_empty() {
        return Err(protocol("trailing bytes after the header block"));
    }
    Ok(Headers(headers))
}
