//! The server core, I/O-free, that both servers drive: the [`lifecycle`]
//! (phases, signals, reports, accept back-off), a client's [`session`]
//! (framing, idle flush, pause gates, the slow-client rule), the
//! [`roster`] (client ids and counts, shareable by N reactors) and the
//! [`durable`] rule (nothing goes out before what was persisted ahead of it
//! is durable). The servers own sockets, threads and the clock; these own
//! the rules, and unit tests drive them with a fake clock.

pub mod durable;
pub mod lifecycle;
pub mod roster;
pub mod session;
