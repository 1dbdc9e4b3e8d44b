use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::frame::{kind, Frame, FrameDecoder, FrameEncoder, Headers, Setting};
use super::{Session, DICTIONARY};
use crate::portforward::{PairError, StreamPairs};
use crate::Error;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Two SYN_STREAM frames as kubectl opens a port-forward pair (streamtype error then data,
/// port 80, requestid 0), compressed by CPython's zlib (C zlib, level 9) with the SPDY/3
/// dictionary and one compression context: an independent implementation of the encoder.
const CPYTHON_SYN_STREAMS: &str = "800300010000003c0000000100000000000078f9e3c6a7c202253a703a2b294a4dcc851625aca9a0808614cb45a024cc64610024398b209198094adc8c0600000000ffff800300010000001800000003000000000000c2aa15540a2512d209000000ffff";

#[test]
fn dictionary_is_the_spdy3_one() {
    assert_eq!(DICTIONARY.len(), 1423);
    // Adler-32, computed by hand here: the zlib DICTID every SPDY/3 header stream names.
    let (mut a, mut b) = (1u32, 0u32);
    for byte in DICTIONARY {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    assert!(DICTIONARY.starts_with(b"\0\0\0\x07options"));
    assert!(DICTIONARY.ends_with(b"enq=0."));
}

#[test]
fn decodes_header_blocks_compressed_by_c_zlib() {
    let mut src = BytesMut::from(&hex(CPYTHON_SYN_STREAMS)[..]);
    let mut decoder = FrameDecoder::new();
    let first = decoder.decode(&mut src).unwrap().unwrap();
    let second = decoder.decode(&mut src).unwrap().unwrap();
    assert!(src.is_empty());
    let headers = |t: &str| {
        Headers::new()
            .with("streamtype", t)
            .with("port", "80")
            .with("requestid", "0")
    };
    assert_eq!(
        first,
        Frame::SynStream {
            stream_id: 1,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: headers("error"),
        }
    );
    // The second block only decodes with the context the first one left.
    match second {
        Frame::SynStream {
            stream_id, headers, ..
        } => {
            assert_eq!(stream_id, 3);
            assert_eq!(headers.get("streamtype"), Some("data"));
            assert_eq!(headers.get("PORT"), Some("80"));
        }
        other => panic!("{other:?}"),
    }
    // Without the first frame's context, the second block is garbage.
    let bytes = hex(CPYTHON_SYN_STREAMS);
    let mut alone = BytesMut::from(&bytes[8 + 0x3c..]);
    assert!(FrameDecoder::new().decode(&mut alone).is_err());
}

fn every_frame() -> Vec<Frame> {
    vec![
        Frame::SynStream {
            stream_id: 5,
            associated_to: 0,
            priority: 3,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers: Headers::new().with("streamtype", "stdout"),
        },
        Frame::SynReply {
            stream_id: 5,
            fin: false,
            headers: Headers::new(),
        },
        Frame::SynReply {
            stream_id: 7,
            fin: true,
            headers: Headers::new().with("a", "1\u{0}2"),
        },
        Frame::Headers {
            stream_id: 7,
            fin: false,
            headers: Headers::new().with("x-y", "z"),
        },
        Frame::Data {
            stream_id: 5,
            fin: false,
            data: Bytes::from_static(b"hello"),
        },
        Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::new(),
        },
        Frame::RstStream {
            stream_id: 9,
            status: super::frame::rst::CANCEL,
        },
        Frame::Settings {
            clear: true,
            entries: vec![Setting {
                flags: 1,
                id: super::frame::settings::INITIAL_WINDOW_SIZE,
                value: 65536,
            }],
        },
        Frame::Ping { id: 1 },
        Frame::GoAway {
            last_good_stream_id: 7,
            status: 0,
        },
        Frame::WindowUpdate {
            stream_id: 5,
            delta: 32768,
        },
        Frame::Unknown {
            kind: 10,
            flags: 0,
            payload: Bytes::from_static(b"credential"),
        },
    ]
}

#[test]
fn every_frame_round_trips_with_shared_compression_contexts() {
    let mut encoder = FrameEncoder::new();
    let mut wire = BytesMut::new();
    for f in every_frame() {
        encoder.encode(&f, &mut wire).unwrap();
    }
    // Header blocks: zlib header with FDICT and the dictionary's id.
    let first_block = &wire[18..24];
    assert_eq!(first_block[0], 0x78);
    assert_ne!(first_block[1] & 0x20, 0, "FDICT flag");
    assert_eq!(&first_block[2..6], &[0xe3, 0xc6, 0xa7, 0xc2]);
    let mut decoder = FrameDecoder::new();
    let mut decoded = Vec::new();
    // Feed byte by byte: frames come out only once complete.
    let mut src = BytesMut::new();
    for b in wire.iter() {
        src.extend_from_slice(&[*b]);
        while let Some(f) = decoder.decode(&mut src).unwrap() {
            decoded.push(f);
        }
    }
    assert_eq!(decoded, every_frame());
}

#[test]
fn wire_format_of_fixed_frames() {
    let mut enc = FrameEncoder::new();
    let mut wire = BytesMut::new();
    enc.encode(
        &Frame::Data {
            stream_id: 3,
            fin: true,
            data: Bytes::from_static(b"ab"),
        },
        &mut wire,
    )
    .unwrap();
    assert_eq!(&wire[..], &[0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']);
    wire.clear();
    enc.encode(&Frame::Ping { id: 0x0102_0304 }, &mut wire)
        .unwrap();
    assert_eq!(&wire[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 1, 2, 3, 4]);
    wire.clear();
    enc.encode(
        &Frame::WindowUpdate {
            stream_id: 1,
            delta: 0x8000,
        },
        &mut wire,
    )
    .unwrap();
    assert_eq!(
        &wire[..],
        &[
            0x80,
            3,
            0,
            kind::WINDOW_UPDATE as u8,
            0,
            0,
            0,
            8,
            0,
            0,
            0,
            1,
            0,
            0,
            0x80,
            0
        ]
    );
    wire.clear();
    enc.encode(
        &Frame::GoAway {
            last_good_stream_id: 5,
            status: 0,
        },
        &mut wire,
    )
    .unwrap();
    assert_eq!(
        &wire[..],
        &[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 5, 0, 0, 0, 0]
    );
}

#[test]
fn bad_frames_are_errors() {
    let mut d = FrameDecoder::new();
    let mut v2 = BytesMut::from(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1][..]);
    assert!(matches!(
        d.decode(&mut v2),
        Err(Error::UnsupportedVersion(2))
    ));
    let mut short = BytesMut::from(&[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0][..]);
    assert!(matches!(d.decode(&mut short), Err(Error::Protocol(_))));
    let mut garbage = BytesMut::from(&[0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4][..]);
    assert!(FrameDecoder::new().decode(&mut garbage).is_err());
    assert!(FrameEncoder::new()
        .encode(
            &Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: Headers(vec![("Upper".into(), "x".into())]),
            },
            &mut BytesMut::new(),
        )
        .is_err());
}

/// The client end of a SPDY connection for session tests.
struct Client {
    io: DuplexStream,
    enc: FrameEncoder,
    dec: FrameDecoder,
    buf: BytesMut,
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        let mut wire = BytesMut::new();
        self.enc.encode(&frame, &mut wire).unwrap();
        self.io.write_all(&wire).await.unwrap();
    }

    async fn open(&mut self, id: u32, headers: Headers) {
        self.send(Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            headers,
        })
        .await;
    }

    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.dec.decode(&mut self.buf).unwrap() {
                return Some(f);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                .await
                .expect("a frame within 5 s")
                .unwrap();
            if n == 0 {
                return None;
            }
        }
    }
}

fn session() -> (Session, tokio::sync::mpsc::Receiver<super::Stream>, Client) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (session, incoming) = Session::serve(a);
    (
        session,
        incoming,
        Client {
            io: b,
            enc: FrameEncoder::new(),
            dec: FrameDecoder::new(),
            buf: BytesMut::new(),
        },
    )
}

#[tokio::test]
async fn session_replies_delivers_data_and_echoes_pings() {
    let (session, mut incoming, mut client) = session();
    client
        .open(1, Headers::new().with("streamtype", "stdout"))
        .await;
    let mut stream = incoming.recv().await.unwrap();
    assert_eq!(stream.id, 1);
    assert_eq!(stream.stream_type(), "stdout");
    assert!(matches!(
        client.next().await,
        Some(Frame::SynReply { stream_id: 1, .. })
    ));
    client
        .send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"in"),
        })
        .await;
    client
        .send(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new(),
        })
        .await;
    assert_eq!(stream.data.recv().await.unwrap(), Bytes::from_static(b"in"));
    assert!(stream.data.recv().await.is_none(), "FIN ends the data");
    stream.writer.write(b"out").await.unwrap();
    stream.writer.finish().await.unwrap();
    stream.writer.write(b"after fin").await.unwrap();
    assert_eq!(
        client.next().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"out")
        })
    );
    assert_eq!(
        client.next().await,
        Some(Frame::Data {
            stream_id: 1,
            fin: true,
            data: Bytes::new()
        })
    );
    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    // Stream ids must be odd and increasing.
    client.open(2, Headers::new()).await;
    assert!(matches!(
        client.next().await,
        Some(Frame::RstStream { stream_id: 2, .. })
    ));
    session.go_away().await;
    assert!(matches!(
        client.next().await,
        Some(Frame::GoAway {
            last_good_stream_id: 1,
            ..
        })
    ));
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), session.closed())
        .await
        .unwrap();
}

#[tokio::test]
async fn large_writes_are_split_and_window_updates_sent() {
    let (_session, mut incoming, mut client) = session();
    client
        .open(1, Headers::new().with("streamtype", "stdin"))
        .await;
    let mut stream = incoming.recv().await.unwrap();
    let _reply = client.next().await;
    let big = vec![7u8; 100 * 1024];
    stream.writer.write(&big).await.unwrap();
    let mut got = 0;
    while got < big.len() {
        match client.next().await.unwrap() {
            Frame::Data { data, .. } => {
                assert!(data.len() <= super::session::MAX_DATA_FRAME);
                got += data.len();
            }
            other => panic!("{other:?}"),
        }
    }
    // 40 KiB in: one stream and one session WINDOW_UPDATE (at half of the 64 KiB window).
    client
        .send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![1u8; 40 * 1024]),
        })
        .await;
    assert_eq!(stream.data.recv().await.unwrap().len(), 40 * 1024);
    let mut updates = Vec::new();
    for _ in 0..2 {
        match client.next().await.unwrap() {
            Frame::WindowUpdate { stream_id, delta } => updates.push((stream_id, delta)),
            other => panic!("{other:?}"),
        }
    }
    updates.sort();
    assert_eq!(updates, vec![(0, 40 * 1024), (1, 40 * 1024)]);
}

#[tokio::test]
async fn port_forward_streams_pair_by_request_id() {
    let (_session, mut incoming, mut client) = session();
    let h = |t: &str, id: &str| {
        Headers::new()
            .with("streamtype", t)
            .with("port", "8080")
            .with("requestid", id)
    };
    client.open(1, h("error", "0")).await;
    client.open(3, h("error", "1")).await;
    client.open(5, h("data", "1")).await;
    client.open(7, h("data", "0")).await;
    client
        .open(
            9,
            Headers::new().with("streamtype", "data").with("port", "x"),
        )
        .await;
    client.open(11, h("bogus", "2")).await;
    let mut pairs = StreamPairs::new();
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for _ in 0..6 {
        let s = incoming.recv().await.unwrap();
        match pairs.add(s) {
            Ok(Some(p)) => done.push((p.request_id, p.port, p.data.id, p.error.id)),
            Ok(None) => {}
            Err((e, s)) => refused.push((e, s.id)),
        }
    }
    assert_eq!(
        done,
        vec![("1".to_string(), 8080, 5, 3), ("0".to_string(), 8080, 7, 1)]
    );
    assert_eq!(refused.len(), 2);
    assert!(matches!(refused[0], (PairError::Port(_), 9)));
    assert!(matches!(refused[1], (PairError::StreamType(_), 11)));
    assert_eq!(pairs.pending(), 0);
    // Old clients send no request id: error stream n and data stream n+2 pair up.
    client
        .open(
            13,
            Headers::new()
                .with("streamtype", "error")
                .with("port", "80"),
        )
        .await;
    client
        .open(
            15,
            Headers::new().with("streamtype", "data").with("port", "80"),
        )
        .await;
    assert!(pairs.add(incoming.recv().await.unwrap()).unwrap().is_none());
    let p = pairs.add(incoming.recv().await.unwrap()).unwrap().unwrap();
    assert_eq!(
        (p.error.id, p.data.id, p.request_id.as_str()),
        (13, 15, "13")
    );
    // A lone half expires.
    client.open(17, h("data", "9")).await;
    assert!(pairs.add(incoming.recv().await.unwrap()).unwrap().is_none());
    assert_eq!(pairs.expire(Duration::ZERO).len(), 1);
}
