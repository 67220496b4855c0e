//! Property tests of the event-stream framing: frames the emulator encodes
//! decode to the same headers and payload with the emulator's own decoder and
//! with the AWS SDK's (`aws-smithy-eventstream`, what the gateway reads
//! ConverseStream replies with), however the bytes are chunked; corrupted or
//! arbitrary bytes are refused without panics, and a length prefix claiming
//! gigabytes allocates nothing of that size.
//!
//! `PROPTEST_CASES` and `PROPTEST_RNG_SEED` tune the runs (docs/fuzzing.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, read_message_from};
use aws_smithy_types::event_stream::{HeaderValue as SdkHeaderValue, Message};
use bedrock_emulator::eventstream::{HeaderValue, decode_all, decode_frame, encode_frame};
use bytes::{Buf, Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, RngSeed};

// ---------------------------------------------------------------------------
// The largest single allocation made by the current thread
// ---------------------------------------------------------------------------

struct TrackingAllocator;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation(size: usize) {
    // `try_with`: the slot is gone while a thread shuts down.
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

/// Runs `work` and returns the largest single allocation it made on this thread.
fn largest_allocation_of(work: impl FnOnce()) -> usize {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    work();
    LARGEST_ALLOCATION.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

const DEFAULT_CASES: u32 = 256;
const DEFAULT_SEED: u64 = 0x6576_656e_7473;

fn config() -> ProptestConfig {
    // `ProptestConfig::default()` reads PROPTEST_CASES and PROPTEST_RNG_SEED.
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    config.failure_persistence = None;
    config
}

// ---------------------------------------------------------------------------
// Generators and helpers
// ---------------------------------------------------------------------------

/// Header names the encoder keeps whole: at most 255 bytes.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(":event-type".to_owned()),
        Just(":message-type".to_owned()),
        "\\PC{0,20}",
        any::<String>(),
    ]
    .prop_filter("at most 255 bytes", |name| name.len() <= 255)
}

/// Header values the SDK accepts: at most i16::MAX bytes.
fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("contentBlockDelta".to_owned()),
        4 => any::<String>(),
        1 => (0usize..32_767).prop_map(|len| "v".repeat(len)),
    ]
    .prop_filter("at most i16::MAX bytes", |value| {
        value.len() <= i16::MAX as usize
    })
}

fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((header_name(), header_value()), 0..6)
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..512),
        1 => (0usize..200_000).prop_map(|len| vec![b'p'; len]),
    ]
}

fn encode(headers: &[(String, String)], payload: &[u8]) -> Vec<u8> {
    let borrowed: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    encode_frame(&borrowed, payload)
}

fn sdk_headers(message: &Message) -> Vec<(String, String)> {
    message
        .headers()
        .iter()
        .map(|header| {
            let value = match header.value() {
                SdkHeaderValue::String(text) => text.as_str().to_owned(),
                other => panic!("the emulator only writes string headers, got {other:?}"),
            };
            (header.name().as_str().to_owned(), value)
        })
        .collect()
}

/// Feeds `bytes` to the SDK's streaming decoder in pieces of the given sizes.
fn decode_streamed(
    bytes: &[u8],
    piece_sizes: &[usize],
) -> Result<(Vec<Message>, usize), aws_smithy_eventstream::error::Error> {
    let mut decoder = MessageFrameDecoder::new();
    let mut buffer = BytesMut::new();
    let mut messages = Vec::new();
    let mut offset = 0;
    let mut sizes = piece_sizes.iter().cycle();
    while offset < bytes.len() {
        let size = sizes.next().copied().unwrap_or(1).max(1);
        let end = (offset + size).min(bytes.len());
        buffer.extend_from_slice(&bytes[offset..end]);
        offset = end;
        while let DecodedFrame::Complete(message) = decoder.decode_frame(&mut buffer)? {
            messages.push(message);
        }
    }
    Ok((messages, buffer.remaining()))
}

/// A prelude (total length, headers length, prelude CRC) with a valid CRC.
fn prelude(total_len: u32, headers_len: u32) -> Vec<u8> {
    let mut bytes = total_len.to_be_bytes().to_vec();
    bytes.extend_from_slice(&headers_len.to_be_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    bytes
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_round_trip_through_both_decoders(headers in headers(), payload in payload()) {
        let encoded = encode(&headers, &payload);

        let (frame, used) = decode_frame(&encoded).expect("the emulator decodes its own frame");
        prop_assert_eq!(used, encoded.len());
        prop_assert_eq!(&frame.payload, &payload);
        let decoded: Vec<(String, String)> = frame
            .headers
            .iter()
            .map(|(name, value)| match value {
                HeaderValue::String(text) => (name.clone(), text.clone()),
                other => panic!("unexpected header type {other:?}"),
            })
            .collect();
        prop_assert_eq!(&decoded, &headers);

        let message = read_message_from(Bytes::from(encoded)).expect("the SDK decodes the frame");
        prop_assert_eq!(message.payload().as_ref(), &payload[..]);
        prop_assert_eq!(sdk_headers(&message), headers);
    }

    #[test]
    fn frame_sequences_decode_however_the_bytes_are_chunked(
        frames in prop::collection::vec((headers(), prop::collection::vec(any::<u8>(), 0..256)), 1..6),
        piece_sizes in prop::collection::vec(1usize..64, 1..8),
    ) {
        let mut stream = Vec::new();
        for (headers, payload) in &frames {
            stream.extend(encode(headers, payload));
        }
        let emulator_frames = decode_all(&stream).expect("the emulator decodes the sequence");
        prop_assert_eq!(emulator_frames.len(), frames.len());

        let (messages, left_over) = decode_streamed(&stream, &piece_sizes)
            .expect("the SDK decodes the sequence");
        prop_assert_eq!(left_over, 0);
        prop_assert_eq!(messages.len(), frames.len());
        for (message, (headers, payload)) in messages.iter().zip(&frames) {
            prop_assert_eq!(message.payload().as_ref(), &payload[..]);
            prop_assert_eq!(&sdk_headers(message), headers);
        }
    }

    /// Names over 255 bytes and values over 65,535 bytes are cut, as the
    /// encoder documents, at a character boundary: the frame stays valid.
    #[test]
    fn oversized_headers_are_cut_into_valid_frames(
        name in "\\PC{200,300}",
        value_chars in prop_oneof![Just('v'), Just('\u{e9}'), Just('\u{1F600}')],
        extra in 0usize..20,
    ) {
        let value: String = std::iter::repeat_n(value_chars, 65_535 / value_chars.len_utf8() + extra).collect();
        let encoded = encode(&[(name.clone(), value.clone())], b"{}");
        let (frame, used) = decode_frame(&encoded).expect("a valid frame");
        prop_assert_eq!(used, encoded.len());
        let (decoded_name, decoded_value) = &frame.headers[0];
        prop_assert!(name.starts_with(decoded_name.as_str()));
        if name.len() <= 255 {
            prop_assert_eq!(decoded_name, &name);
        } else {
            prop_assert!((252..=255).contains(&decoded_name.len()));
        }
        match decoded_value {
            HeaderValue::String(text) => {
                prop_assert!(value.starts_with(text.as_str()));
                if value.len() <= 65_535 {
                    prop_assert_eq!(text, &value);
                } else {
                    prop_assert!((65_532..=65_535).contains(&text.len()));
                }
            }
            other => prop_assert!(false, "unexpected header {other:?}"),
        }
        read_message_from(Bytes::from(encoded)).expect("the SDK reads the frame");
    }

    #[test]
    fn a_flipped_bit_is_always_refused(
        headers in headers(),
        payload in prop::collection::vec(any::<u8>(), 0..256),
        position in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut encoded = encode(&headers, &payload);
        let at = position.index(encoded.len());
        encoded[at] ^= 1 << bit;
        prop_assert!(decode_frame(&encoded).is_err(), "the emulator accepted a flip at {at}");
        prop_assert!(read_message_from(Bytes::from(encoded.clone())).is_err(),
            "the SDK accepted a flip at {at}");
        // A streaming reader either refuses the frame or waits for bytes
        // that a longer (corrupted) length claims; it never yields it.
        let streamed = decode_streamed(&encoded, &[7]);
        prop_assert!(streamed.is_err() || streamed.is_ok_and(|(messages, _)| messages.is_empty()));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoders(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        piece_sizes in prop::collection::vec(1usize..32, 1..4),
    ) {
        let _ = decode_frame(&bytes);
        let _ = decode_all(&bytes);
        let _ = read_message_from(Bytes::from(bytes.clone()));
        let _ = decode_streamed(&bytes, &piece_sizes);
    }

    /// Bytes after a valid prelude are arbitrary: the prelude CRC passes and
    /// the header and payload parsing sees junk.
    #[test]
    fn junk_behind_a_valid_prelude_never_panics(
        body in prop::collection::vec(any::<u8>(), 4..512),
        headers_len in prop_oneof![0u32..600, any::<u32>()],
        message_crc_valid in any::<bool>(),
    ) {
        let total_len = (12 + body.len()) as u32;
        let mut frame = prelude(total_len, headers_len);
        frame.extend_from_slice(&body[..body.len() - 4]);
        if message_crc_valid {
            let crc = crc32fast::hash(&frame);
            frame.extend_from_slice(&crc.to_be_bytes());
        } else {
            frame.extend_from_slice(&body[body.len() - 4..]);
        }
        let _ = decode_frame(&frame);
        let _ = read_message_from(Bytes::from(frame.clone()));
        let _ = decode_streamed(&frame, &[5, 11]);
    }

    /// A length prefix claiming up to 4 GiB, with a valid prelude CRC, makes
    /// neither decoder allocate more than the bytes actually present.
    #[test]
    fn huge_length_prefixes_allocate_nothing_of_their_size(
        total_len in (1u32 << 20)..=u32::MAX,
        headers_len in any::<u32>(),
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = prelude(total_len, headers_len);
        frame.extend_from_slice(&tail);
        let largest = largest_allocation_of(|| {
            let _ = decode_frame(&frame);
            let _ = decode_all(&frame);
            let _ = read_message_from(Bytes::from(frame.clone()));
            let streamed = decode_streamed(&frame, &[3, 64]);
            assert!(
                streamed.is_err() || streamed.is_ok_and(|(messages, _)| messages.is_empty()),
                "a frame was produced from a truncated claim"
            );
        });
        prop_assert!(largest < 64 * 1024, "largest allocation {largest} bytes");
    }
}

#[test]
fn the_allocation_tracker_sees_large_allocations() {
    let largest = largest_allocation_of(|| {
        let big = vec![0u8; 8 << 20];
        std::hint::black_box(&big);
    });
    assert!(largest >= 8 << 20, "tracker saw only {largest} bytes");
}

#[test]
fn a_name_cut_inside_a_multibyte_character_stays_valid_utf8() {
    // 127 two-byte characters and a third byte: the 255-byte cut falls inside
    // the last character, which must be dropped whole.
    let name = format!("a{}", "\u{e9}".repeat(127));
    assert_eq!(name.len(), 255);
    let longer = format!("{name}\u{e9}");
    let encoded = encode_frame(&[(longer.as_str(), "x")], b"");
    let (frame, _) = decode_frame(&encoded).expect("a valid frame");
    assert_eq!(frame.headers[0].0, name);
    let shifted = format!("ab{}", "\u{e9}".repeat(127));
    let encoded = encode_frame(&[(shifted.as_str(), "x")], b"");
    let (frame, _) = decode_frame(&encoded).expect("a valid frame");
    assert_eq!(frame.headers[0].0, format!("ab{}", "\u{e9}".repeat(126)));
    read_message_from(Bytes::from(encoded)).expect("the SDK reads it too");
}
