//! loadgen's own gRPC client for `queue.Queue`: HTTP/2 frames written and
//! read by hand on one connection, so that the load generator costs much
//! less CPU per call than the server it measures (issue 20 item 3: with
//! tonic's client, and then hyper's, loadgen used more CPU per call than
//! `queue-grpc-server`, so the run measured loadgen).
//!
//! A unary call to `queue.Queue` is fixed bytes: a HEADERS frame whose
//! header block is the same for every call of a method (static-table
//! entries and literals never indexed, so no HPACK state), then one DATA
//! frame with the 5-byte gRPC prefix and the protobuf message. Both are
//! built once per method; a call patches in its stream id.
//!
//! What comes back is read frame by frame. Header blocks are not decoded
//! (the server's HPACK encoder may index what it likes, we never look): a
//! call succeeds when its stream ends normally carrying exactly one
//! uncompressed gRPC message, which `prost` decodes and the driver checks;
//! a stream that ends without one (a trailers-only response: any gRPC
//! error status), a RST_STREAM, a GOAWAY or a closed connection is an
//! error. HTTP/2's duties are kept: SETTINGS acknowledged and obeyed
//! (concurrent streams, the initial window, the frame size), PINGs
//! answered, our send window respected, the server's windows refilled.
//!
//! One [`Driver`] task per connection does all the socket I/O: callers
//! append frames and wait for their stream's reply; the driver writes
//! what is queued, reads what arrived, and wakes the callers whose replies
//! are complete. Everything is on one thread (`Rc`, `spawn_local`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::QueueConn;
use crate::grpc::pb::{ItemReply, PutReply, PutRequest, SizeReply};

mod frames;
use frames::*;

/// The three methods loadgen calls, and their header blocks' index.
#[derive(Clone, Copy)]
enum Method {
    Put = 0,
    Pop = 1,
    Size = 2,
}

/// One call waiting for its reply.
#[derive(Default)]
struct Call {
    /// The stream's DATA so far: the gRPC-framed reply.
    data: Vec<u8>,
    /// Set when the stream ended (or failed).
    done: Option<Result<Vec<u8>, String>>,
    /// The caller, woken when `done` is set.
    waker: Option<Waker>,
}

/// What the callers and the driver share, on one thread.
struct State {
    /// Frames queued for the socket, from `written` on.
    out: Vec<u8>,
    written: usize,
    /// Our next stream id (odd, increasing).
    next_id: u32,
    calls: HashMap<u32, Call>,
    /// Bytes of DATA we may still send on the connection (the server's
    /// connection window), and on a new stream.
    send_window: i64,
    stream_send_window: i64,
    /// The server's SETTINGS_MAX_CONCURRENT_STREAMS and MAX_FRAME_SIZE.
    max_streams: usize,
    max_frame: usize,
    /// DATA bytes read and not yet given back with a WINDOW_UPDATE.
    unrefilled: u32,
    /// A header block that goes on in CONTINUATION frames: its stream, and
    /// whether it ends the stream.
    continuation: Option<(u32, bool)>,
    /// Once the connection failed (or the server said GOAWAY), why: every
    /// call from then on fails with it.
    failed: Option<String>,
    /// The driver, woken when frames are queued or a handle is dropped.
    driver: Option<Waker>,
    /// Callers waiting for a stream slot or for send window.
    waiting: Vec<Waker>,
    /// The header block of each [`Method`].
    headers: [Vec<u8>; 3],
    /// Bytes written and read, for the report.
    sent: u64,
    received: u64,
}

impl State {
    fn new(addr: SocketAddr) -> State {
        let authority = addr.to_string();
        let mut out = PREFACE.to_vec();
        let settings: [(u16, u32); 2] = [
            (SETTINGS_ENABLE_PUSH, 0),
            (SETTINGS_INITIAL_WINDOW_SIZE, STREAM_RECV_WINDOW),
        ];
        frame_head(&mut out, settings.len() * 6, SETTINGS, 0, 0);
        for (id, value) in settings {
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&value.to_be_bytes());
        }
        frame_head(&mut out, 4, WINDOW_UPDATE, 0, 0);
        out.extend_from_slice(&(CONN_RECV_WINDOW - DEFAULT_WINDOW as u32).to_be_bytes());
        State {
            out,
            written: 0,
            next_id: 1,
            calls: HashMap::new(),
            send_window: DEFAULT_WINDOW,
            stream_send_window: DEFAULT_WINDOW,
            max_streams: usize::MAX,
            max_frame: DEFAULT_FRAME,
            unrefilled: 0,
            continuation: None,
            failed: None,
            driver: None,
            waiting: Vec::new(),
            headers: [
                call_headers("put", &authority),
                call_headers("pop", &authority),
                call_headers("size", &authority),
            ],
            sent: 0,
            received: 0,
        }
    }

    fn wake_driver(&mut self) {
        if let Some(driver) = &self.driver {
            driver.wake_by_ref();
        }
    }

    fn wake_waiting(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }

    /// Starts a call of `method` with the gRPC message `message` (its
    /// protobuf bytes): queues its frames and gives its stream id, or waits
    /// for a stream slot or send window.
    fn start(
        &mut self,
        cx: &mut Context<'_>,
        method: Method,
        message: &[u8],
    ) -> Poll<Result<u32, String>> {
        if let Some(why) = &self.failed {
            return Poll::Ready(Err(why.clone()));
        }
        let body = 5 + message.len();
        if body as i64 > self.stream_send_window {
            return Poll::Ready(Err(format!(
                "a request of {body} bytes is more than the server's stream window ({})",
                self.stream_send_window
            )));
        }
        if self.calls.len() >= self.max_streams || (body as i64) > self.send_window {
            self.waiting.push(cx.waker().clone());
            return Poll::Pending;
        }
        let id = self.next_id;
        self.next_id += 2;
        let block = &self.headers[method as usize];
        frame_head(&mut self.out, block.len(), HEADERS, END_HEADERS, id);
        self.out.extend_from_slice(block);
        // The message, in DATA frames of at most the server's frame size
        // (one for every item loadgen puts); the last ends the stream.
        let mut prefix = [0u8; 5];
        prefix[1..].copy_from_slice(&(message.len() as u32).to_be_bytes());
        if body <= self.max_frame {
            frame_head(&mut self.out, body, DATA, END_STREAM, id);
            self.out.extend_from_slice(&prefix);
            self.out.extend_from_slice(message);
        } else {
            // Longer than the server's frame size (an item of over 16 KiB):
            // several DATA frames, the last one ending the stream.
            let whole = [&prefix[..], message].concat();
            let mut chunks = whole.chunks(self.max_frame).peekable();
            while let Some(chunk) = chunks.next() {
                let flags = if chunks.peek().is_none() {
                    END_STREAM
                } else {
                    0
                };
                frame_head(&mut self.out, chunk.len(), DATA, flags, id);
                self.out.extend_from_slice(chunk);
            }
        }
        self.send_window -= body as i64;
        self.calls.insert(id, Call::default());
        self.wake_driver();
        Poll::Ready(Ok(id))
    }

    /// The reply of stream `id`, once it ended: the gRPC message's bytes.
    fn reply(&mut self, cx: &mut Context<'_>, id: u32) -> Poll<Result<Vec<u8>, String>> {
        let Some(call) = self.calls.get_mut(&id) else {
            return Poll::Ready(Err("the call was lost".into()));
        };
        if call.done.is_none() {
            match &self.failed {
                Some(why) => call.done = Some(Err(why.clone())),
                None => {
                    if !call.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        call.waker = Some(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
            }
        }
        let done = self.calls.remove(&id).and_then(|c| c.done);
        // A stream slot is free.
        self.wake_waiting();
        Poll::Ready(done.unwrap_or_else(|| Err("the call was lost".into())))
    }

    /// Ends stream `id` with `result` and wakes its caller.
    fn finish(&mut self, id: u32, result: Result<Vec<u8>, String>) {
        if let Some(call) = self.calls.get_mut(&id)
            && call.done.is_none()
        {
            call.done = Some(result);
            if let Some(waker) = call.waker.take() {
                waker.wake();
            }
        }
    }

    /// The stream `id` ended normally: its DATA must be one gRPC message.
    fn ended(&mut self, id: u32) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let mut data = std::mem::take(&mut call.data);
        let framed = data.len() >= 5
            && data[0] == 0
            && be32(&data[1..]).is_some_and(|len| len as usize == data.len() - 5);
        let result = if data.is_empty() {
            Err("the call failed: the server answered with no message (a gRPC error status)".into())
        } else if framed {
            data.drain(..5);
            Ok(data)
        } else {
            Err(format!("a malformed reply: {} bytes of DATA", data.len()))
        };
        self.finish(id, result);
    }

    /// Every call fails with `why`, now and from now on.
    fn fail(&mut self, why: String) {
        let ids: Vec<u32> = self.calls.keys().copied().collect();
        for id in ids {
            self.finish(id, Err(why.clone()));
        }
        self.failed.get_or_insert(why);
        self.wake_waiting();
    }

    /// One frame from the server.
    fn frame(&mut self, kind: u8, flags: u8, id: u32, payload: &[u8]) -> Result<(), String> {
        if self.continuation.is_some() && kind != CONTINUATION {
            return Err("a header block was interrupted (HTTP/2 protocol error)".into());
        }
        match kind {
            DATA => {
                self.unrefilled += payload.len() as u32;
                let body = unpad(flags, payload)?;
                if let Some(call) = self.calls.get_mut(&id) {
                    call.data.extend_from_slice(body);
                }
                if flags & END_STREAM != 0 {
                    self.ended(id);
                }
                if self.unrefilled >= REFILL {
                    frame_head(&mut self.out, 4, WINDOW_UPDATE, 0, 0);
                    self.out.extend_from_slice(&self.unrefilled.to_be_bytes());
                    self.unrefilled = 0;
                }
            }
            HEADERS => {
                // The block itself is not decoded (see the module doc).
                let end_stream = flags & END_STREAM != 0;
                if flags & END_HEADERS == 0 {
                    self.continuation = Some((id, end_stream));
                } else if end_stream {
                    self.ended(id);
                }
            }
            CONTINUATION => match self.continuation {
                Some((stream, end_stream)) if stream == id => {
                    if flags & END_HEADERS != 0 {
                        self.continuation = None;
                        if end_stream {
                            self.ended(id);
                        }
                    }
                }
                _ => return Err("an unexpected CONTINUATION (HTTP/2 protocol error)".into()),
            },
            RST_STREAM => {
                let code = be32(payload).unwrap_or(0);
                self.finish(
                    id,
                    Err(format!("the server reset the stream (HTTP/2 error {code})")),
                );
            }
            SETTINGS if flags & ACK == 0 => {
                for setting in payload.chunks_exact(6) {
                    let value =
                        u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
                    match u16::from_be_bytes([setting[0], setting[1]]) {
                        SETTINGS_MAX_CONCURRENT_STREAMS => {
                            self.max_streams = usize::try_from(value).unwrap_or(usize::MAX);
                        }
                        SETTINGS_INITIAL_WINDOW_SIZE => self.stream_send_window = i64::from(value),
                        SETTINGS_MAX_FRAME_SIZE => {
                            self.max_frame = usize::try_from(value).unwrap_or(DEFAULT_FRAME);
                        }
                        _ => {}
                    }
                }
                frame_head(&mut self.out, 0, SETTINGS, ACK, 0);
                self.wake_waiting();
            }
            PING if flags & ACK == 0 => {
                frame_head(&mut self.out, payload.len(), PING, ACK, 0);
                self.out.extend_from_slice(payload);
            }
            GOAWAY => {
                let last = be32(payload).unwrap_or(0) & 0x7fff_ffff;
                let code = be32(payload.get(4..).unwrap_or_default()).unwrap_or(0);
                let debug = String::from_utf8_lossy(payload.get(8..).unwrap_or_default());
                let why = format!("the server sent GOAWAY: {debug:?} (HTTP/2 error {code})");
                // Streams past `last` were not processed; the others finish.
                let lost: Vec<u32> = self.calls.keys().copied().filter(|&s| s > last).collect();
                for id in lost {
                    self.finish(id, Err(why.clone()));
                }
                self.failed.get_or_insert(why);
                self.wake_waiting();
            }
            WINDOW_UPDATE if id == 0 => {
                self.send_window += i64::from(be32(payload).unwrap_or(0) & 0x7fff_ffff);
                self.wake_waiting();
            }
            // Acknowledgements, stream window updates (requests fit in the
            // initial window), PRIORITY and unknown types: nothing to do.
            _ => {}
        }
        Ok(())
    }
}

fn be32(bytes: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?))
}

/// A DATA frame's payload without its padding.
fn unpad(flags: u8, payload: &[u8]) -> Result<&[u8], String> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let pad = usize::from(*payload.first().ok_or("an empty padded frame")?);
    payload
        .len()
        .checked_sub(1 + pad)
        .map(|end| &payload[1..1 + end])
        .ok_or_else(|| "padding longer than its frame (HTTP/2 protocol error)".into())
}

/// The connection's socket I/O, as a task.
struct Driver {
    stream: TcpStream,
    state: Rc<RefCell<State>>,
    buf: Box<[u8]>,
    /// `buf[start..end]` is read and not yet parsed.
    start: usize,
    end: usize,
    /// Why the last send failed: nothing more is written.
    send_error: Option<String>,
}

impl Driver {
    /// Writes what is queued; whether anything was written.
    fn flush(&mut self, cx: &mut Context<'_>, st: &mut State) -> Result<bool, String> {
        let mut progress = false;
        while st.written < st.out.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &st.out[st.written..]) {
                Poll::Ready(Ok(0)) => return Err("the connection closed".into()),
                Poll::Ready(Ok(n)) => {
                    st.written += n;
                    st.sent += n as u64;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(format!("send: {}", crate::net::os_reason(&e))),
                Poll::Pending => break,
            }
        }
        if st.written == st.out.len() {
            st.out.clear();
            st.written = 0;
        }
        Ok(progress)
    }

    /// Reads what arrived and handles every whole frame; false when there
    /// was nothing to read.
    fn read(&mut self, cx: &mut Context<'_>, st: &mut State) -> Result<bool, String> {
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        } else if self.buf.len() - self.end < 9 + DEFAULT_FRAME {
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        let mut rb = ReadBuf::new(&mut self.buf[self.end..]);
        match Pin::new(&mut self.stream).poll_read(cx, &mut rb) {
            Poll::Pending => return Ok(false),
            Poll::Ready(Err(e)) => return Err(format!("receive: {}", crate::net::os_reason(&e))),
            Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                return Err("the server closed the connection".into());
            }
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                self.end += n;
                st.received += n as u64;
            }
        }
        while self.end - self.start >= 9 {
            let head = &self.buf[self.start..self.start + 9];
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            if len > DEFAULT_FRAME {
                return Err(format!("a frame of {len} bytes (HTTP/2 frame size error)"));
            }
            if self.end - self.start < 9 + len {
                break;
            }
            let (kind, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let payload = &self.buf[self.start + 9..self.start + 9 + len];
            st.frame(kind, flags, id, payload)?;
            self.start += 9 + len;
        }
        Ok(true)
    }
}

impl Future for Driver {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let state = Rc::clone(&this.state);
        let mut st = state.borrow_mut();
        if !st.driver.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.driver = Some(cx.waker().clone());
        }
        loop {
            // A send that failed (the server closed) stops the writing
            // only: what the server said before closing (a GOAWAY's reason)
            // is still to be read, and the read side then sees the close.
            let wrote = match this.send_error {
                Some(_) => false,
                None => this.flush(cx, &mut st).unwrap_or_else(|why| {
                    this.send_error = Some(why);
                    true
                }),
            };
            match this.read(cx, &mut st) {
                Ok(read) if read || wrote => {}
                Ok(_) => break,
                Err(why) => {
                    st.fail(this.send_error.take().unwrap_or(why));
                    return Poll::Ready(());
                }
            }
        }
        // Every handle dropped (only this task holds the state) and no call
        // left: the connection closes.
        if Rc::strong_count(&state) == 2 && st.calls.is_empty() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// One client's HTTP/2 connection; [`QueueConn::fork`] gives more handles
/// on it, one per call in flight.
pub struct GrpcConn {
    state: Rc<RefCell<State>>,
}

impl Drop for GrpcConn {
    fn drop(&mut self) {
        // The driver ends once the last handle is gone.
        self.state.borrow_mut().wake_driver();
    }
}

impl GrpcConn {
    /// One call: its reply message's bytes.
    async fn call(&mut self, method: Method, message: &[u8]) -> Result<Vec<u8>, String> {
        let id = poll_fn(|cx| self.state.borrow_mut().start(cx, method, message)).await?;
        poll_fn(|cx| self.state.borrow_mut().reply(cx, id)).await
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, String> {
    M::decode(bytes).map_err(|e| format!("a reply that does not decode: {e}"))
}

impl QueueConn for GrpcConn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let state = Rc::new(RefCell::new(State::new(addr)));
        tokio::task::spawn_local(Driver {
            stream,
            state: Rc::clone(&state),
            buf: vec![0; READ_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            send_error: None,
        });
        Ok(GrpcConn { state })
    }

    /// HTTP/2 multiplexes: each handle's calls are streams of the one
    /// connection, and the driver writes the frames of all of them together.
    fn fork(&self) -> Option<Self> {
        Some(GrpcConn {
            state: Rc::clone(&self.state),
        })
    }

    async fn put(&mut self, item: String) -> Result<bool, String> {
        let request = PutRequest { item }.encode_to_vec();
        let reply: PutReply = decode(&self.call(Method::Put, &request).await?)?;
        Ok(reply.ok)
    }

    async fn pop(&mut self) -> Result<Option<String>, String> {
        let reply: ItemReply = decode(&self.call(Method::Pop, &[]).await?)?;
        Ok((!reply.empty).then_some(reply.item))
    }

    async fn size(&mut self) -> Result<u64, String> {
        let reply: SizeReply = decode(&self.call(Method::Size, &[]).await?)?;
        Ok(u64::from(reply.size))
    }

    fn bytes(&self) -> Option<(u64, u64)> {
        let st = self.state.borrow();
        Some((st.sent, st.received))
    }
}
