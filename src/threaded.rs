//! One OS thread per connection, driving the same handlers. STUB: being written.

use std::io;

use crate::config::ServerConfig;
use crate::handlers::{Finish, Handler};
use crate::status::Status;

/// # Errors
/// Not built yet.
pub fn run(
    _listener: std::net::TcpListener,
    _config: ServerConfig,
    _handler: Box<dyn Handler>,
    _status: Status,
    _journal: Option<crate::journal::Journal>,
) -> io::Result<Finish> {
    Err(io::Error::other("threaded-server is not built yet"))
}
