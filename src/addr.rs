//! `ADDR` on the client command lines: `HOST:PORT`, `[V6ADDR]:PORT`, or a
//! bare `PORT` meaning 127.0.0.1 (SPEC). Parsing is pure; [`Target::connect`]
//! is the one place that touches the network.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::str::FromStr;

/// A server address as the user wrote it, parsed but not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IP literal, or a name left for the resolver at connect time (so
    /// parsing never does network I/O and stays testable).
    pub host: Host,
    /// Never 0: nothing can be reached on port 0.
    pub port: u16,
}

/// The host part of a [`Target`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A host name such as `localhost`, resolved by the system.
    Name(String),
}

/// Why a string is not an `ADDR`. The text is what clap shows after
/// "invalid value".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrError {
    /// Nothing given.
    Empty,
    /// No `:PORT` and not a bare port number.
    MissingPort,
    /// Nothing before the `:`.
    MissingHost,
    /// The port is not a decimal number in 1..=65535.
    BadPort(String),
    /// An IPv6 address without brackets, so the port cannot be told apart.
    UnbracketedV6,
    /// Text inside `[...]` that is not an IPv6 address, or a missing `]:`.
    BadV6(String),
    /// Whitespace or other characters no host name contains.
    BadHost(String),
}

impl fmt::Display for AddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrError::Empty => write!(f, "empty address"),
            AddrError::MissingPort => {
                write!(f, "expected HOST:PORT, [V6ADDR]:PORT or a bare PORT")
            }
            AddrError::MissingHost => write!(f, "missing host before ':'"),
            AddrError::BadPort(port) => {
                write!(f, "port '{port}' is not a number from 1 to 65535")
            }
            AddrError::UnbracketedV6 => {
                write!(f, "an IPv6 address needs brackets: [V6ADDR]:PORT")
            }
            AddrError::BadV6(text) => write!(f, "'{text}' is not [V6ADDR]:PORT"),
            AddrError::BadHost(host) => write!(f, "'{host}' is not a host name"),
        }
    }
}

impl std::error::Error for AddrError {}

/// Decimal digits only (no sign, no spaces, unlike `u16::from_str`), 1..=65535.
fn parse_port(text: &str) -> Result<u16, AddrError> {
    let bad = || AddrError::BadPort(text.to_string());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// The parse itself; [`Target::from_str`] is the public face.
fn parse(text: &str) -> Result<Target, AddrError> {
    if text.is_empty() {
        return Err(AddrError::Empty);
    }
    // SPEC: a bare PORT means 127.0.0.1.
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Target {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: parse_port(text)?,
        });
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, port) = rest
            .split_once("]:")
            .ok_or_else(|| AddrError::BadV6(text.to_string()))?;
        let ip: Ipv6Addr = inside
            .parse()
            .map_err(|_| AddrError::BadV6(text.to_string()))?;
        return Ok(Target {
            host: Host::Ip(IpAddr::V6(ip)),
            port: parse_port(port)?,
        });
    }
    let (host, port) = text.rsplit_once(':').ok_or(AddrError::MissingPort)?;
    if host.contains(':') {
        return Err(AddrError::UnbracketedV6);
    }
    if host.is_empty() {
        return Err(AddrError::MissingHost);
    }
    let port = parse_port(port)?;
    let host = match host.parse::<Ipv4Addr>() {
        Ok(ip) => Host::Ip(IpAddr::V4(ip)),
        Err(_) if host.chars().all(is_host_char) => Host::Name(host.to_string()),
        Err(_) => return Err(AddrError::BadHost(host.to_string())),
    };
    Ok(Target { host, port })
}

/// Letters (any script: the resolver may know IDNs), digits, `-`, `.`, `_`.
fn is_host_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '-' | '.' | '_')
}

impl FromStr for Target {
    type Err = AddrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse(text)
    }
}

/// `127.0.0.1:9`, `[::1]:9`, `localhost:9`: the form used in error lines.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Host::Ip(ip) => write!(f, "{}", SocketAddr::new(*ip, self.port)),
            Host::Name(name) => write!(f, "{name}:{}", self.port),
        }
    }
}

/// Why [`Target::connect`] failed: the caller names the address and the reason.
#[derive(Debug)]
pub enum ConnectError {
    /// The host name did not resolve (or resolved to nothing).
    Resolve(io::Error),
    /// Every resolved address refused or failed; the last OS error.
    Connect(io::Error),
}

impl Target {
    /// The socket addresses to try, in the resolver's order. IP literals
    /// need no lookup.
    ///
    /// # Errors
    /// The resolver's error for a name it does not know, or `NotFound` when
    /// it answers with no address.
    pub fn resolve(&self) -> io::Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = match &self.host {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, self.port)],
            Host::Name(name) => (name.as_str(), self.port).to_socket_addrs()?.collect(),
        };
        if addrs.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no address found"));
        }
        Ok(addrs)
    }

    /// A blocking TCP connection to the first resolved address that accepts.
    ///
    /// # Errors
    /// [`ConnectError::Resolve`] when the name does not resolve,
    /// [`ConnectError::Connect`] with the last address's OS error otherwise.
    pub fn connect(&self) -> Result<TcpStream, ConnectError> {
        let addrs = self.resolve().map_err(ConnectError::Resolve)?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(ConnectError::Connect(
            last.expect("resolve() returns at least one address"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(text: &str) -> Host {
        Host::Ip(text.parse().unwrap())
    }

    #[test]
    fn bare_port_means_ipv4_loopback() {
        let t: Target = "5555".parse().unwrap();
        assert_eq!(t.host, ip("127.0.0.1"));
        assert_eq!(t.port, 5555);
        assert_eq!(t.to_string(), "127.0.0.1:5555");
    }

    #[test]
    fn host_and_port() {
        let t: Target = "10.1.2.3:80".parse().unwrap();
        assert_eq!((t.host, t.port), (ip("10.1.2.3"), 80));
        let t: Target = "localhost:7722".parse().unwrap();
        assert_eq!(t.host, Host::Name("localhost".into()));
        assert_eq!(t.to_string(), "localhost:7722");
    }

    #[test]
    fn bracketed_v6() {
        let t: Target = "[::1]:7722".parse().unwrap();
        assert_eq!((t.host.clone(), t.port), (ip("::1"), 7722));
        assert_eq!(t.to_string(), "[::1]:7722");
        let t: Target = "[fe80::1:2]:1".parse().unwrap();
        assert_eq!(t.host, ip("fe80::1:2"));
    }

    #[test]
    fn rejects_what_is_not_an_addr() {
        let err = |s: &str| s.parse::<Target>().unwrap_err();
        assert_eq!(err(""), AddrError::Empty);
        assert_eq!(err("localhost"), AddrError::MissingPort);
        assert_eq!(err(":80"), AddrError::MissingHost);
        assert_eq!(err("::1:80"), AddrError::UnbracketedV6);
        assert!(matches!(err("0"), AddrError::BadPort(_)));
        assert!(matches!(err("65536"), AddrError::BadPort(_)));
        assert!(matches!(err("host:+80"), AddrError::BadPort(_)));
        assert!(matches!(err("host: 80"), AddrError::BadPort(_)));
        assert!(matches!(err("host:"), AddrError::BadPort(_)));
        assert!(matches!(err("[::1]"), AddrError::BadV6(_)));
        assert!(matches!(err("[::1]80"), AddrError::BadV6(_)));
        assert!(matches!(err("[1.2.3.4]:80"), AddrError::BadV6(_)));
        assert!(matches!(err("[nope]:80"), AddrError::BadV6(_)));
        assert!(matches!(err("a b:80"), AddrError::BadHost(_)));
    }

    #[test]
    fn literals_resolve_without_lookup() {
        let t: Target = "[::1]:9".parse().unwrap();
        assert_eq!(t.resolve().unwrap(), vec!["[::1]:9".parse().unwrap()]);
    }

    proptest! {
        /// Any socket address written the way Rust (and SPEC) writes it
        /// parses back to itself, and displays identically.
        #[test]
        fn socket_addrs_round_trip(ip in any::<IpAddr>(), port in 1u16..) {
            let addr = SocketAddr::new(ip, port);
            let t: Target = addr.to_string().parse().unwrap();
            prop_assert_eq!(t.resolve().unwrap(), vec![addr]);
            prop_assert_eq!(t.to_string(), addr.to_string());
        }

        #[test]
        fn bare_ports_round_trip(port in 1u16..) {
            let t: Target = port.to_string().parse().unwrap();
            prop_assert_eq!(t.to_string(), format!("127.0.0.1:{port}"));
        }

        /// Parsing never panics, and whatever parses displays as something
        /// that parses to the same target.
        #[test]
        fn display_reparses(text in "\\PC{0,30}") {
            if let Ok(t) = text.parse::<Target>() {
                prop_assert_eq!(t.to_string().parse::<Target>(), Ok(t));
            }
        }
    }
}
