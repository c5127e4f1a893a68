//! The bytes of HTTP/2 and HPACK that loadgen's gRPC client writes: frame
//! types, flags and settings, its windows, and the encoders of a frame
//! header and of a call's fixed header block (see the parent module).

pub(super) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(super) const DATA: u8 = 0x0;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const RST_STREAM: u8 = 0x3;
pub(super) const SETTINGS: u8 = 0x4;
pub(super) const PING: u8 = 0x6;
pub(super) const GOAWAY: u8 = 0x7;
pub(super) const WINDOW_UPDATE: u8 = 0x8;
pub(super) const CONTINUATION: u8 = 0x9;
pub(super) const END_STREAM: u8 = 0x1;
pub(super) const ACK: u8 = 0x1;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(super) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(super) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(super) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;

/// HTTP/2's initial windows and frame size, until the server's SETTINGS.
pub(super) const DEFAULT_WINDOW: i64 = 65_535;
pub(super) const DEFAULT_FRAME: usize = 16_384;
/// Our stream receive window (SETTINGS_INITIAL_WINDOW_SIZE): a reply of
/// the longest item (65,541 bytes) fits, so streams need no WINDOW_UPDATE.
pub(super) const STREAM_RECV_WINDOW: u32 = 1 << 20;
/// Our connection receive window, set at the start and refilled in steps
/// of [`REFILL`], so the server never waits for us.
pub(super) const CONN_RECV_WINDOW: u32 = 16 << 20;
pub(super) const REFILL: u32 = 1 << 20;
/// Read buffer: a frame of the largest size we accept (the default
/// 16 KiB: we do not raise SETTINGS_MAX_FRAME_SIZE) and its header, twice
/// over, so one read brings many small frames.
pub(super) const READ_BUFFER: usize = 64 * 1024;

/// A frame header: length, type, flags, stream.
pub(super) fn frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// An HPACK string literal, not Huffman-coded (HPACK's integer encoding
/// of the length, 7-bit prefix).
pub(super) fn hpack_string(block: &mut Vec<u8>, text: &[u8]) {
    hpack_int(block, 0x00, 7, text.len());
    block.extend_from_slice(text);
}

/// HPACK's integer encoding: `first` holds the pattern bits above the
/// `prefix` bits.
pub(super) fn hpack_int(block: &mut Vec<u8>, first: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        block.push(first | n as u8);
        return;
    }
    block.push(first | max as u8);
    n -= max;
    while n >= 128 {
        block.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    block.push(n as u8);
}

/// The header block of a call to `/queue.Queue/{method}` at `authority`:
/// the same bytes on every stream (nothing enters the HPACK table).
pub(super) fn call_headers(method: &str, authority: &str) -> Vec<u8> {
    let mut block = vec![0x83, 0x86]; // :method POST, :scheme http (static table)
    block.push(0x04); // :path (name from the static table), a literal without indexing
    hpack_string(&mut block, format!("/queue.Queue/{method}").as_bytes());
    block.push(0x01); // :authority
    hpack_string(&mut block, authority.as_bytes());
    block.push(0x0f); // content-type: static index 31 = 15 + 16
    block.push(0x10);
    hpack_string(&mut block, b"application/grpc");
    block.push(0x00); // a new name, not indexed
    hpack_string(&mut block, b"te");
    hpack_string(&mut block, b"trailers");
    block
}
