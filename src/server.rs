//! The server core, I/O-free, that both servers drive: the [`lifecycle`]
//! (phases, signals, reports, accept back-off), a client's [`session`]
//! (framing, idle flush, pause gates, the slow-client rule), the
//! [`durable`] rule (nothing goes out before what was persisted ahead of it
//! is durable) and the [`datagram`] side (UDP peers as clients, idle
//! expiry, reply shaping, the bounded reply queue). The servers own
//! sockets, threads and the clock; these own the rules, and unit tests
//! drive them with a fake clock.

pub mod datagram;
pub mod durable;
pub mod lifecycle;
pub mod session;
