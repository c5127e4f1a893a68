//! The clients the seeds describe, one subcommand each. See `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nonblocking::addr::Target;
use nonblocking::client;

/// Clients for the nonblocking server's protocols.
///
/// ADDR is `HOST:PORT`, `[V6ADDR]:PORT`, or a bare `PORT` (meaning 127.0.0.1).
/// Exit status: 0 on success, 1 on a runtime error (unreachable server,
/// missing file, an `error:` line from the server), 2 on a usage error.
#[derive(Parser, Debug)]
#[command(name = "nonblocking-client", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Stream FILE's transactions to a ledger server (seed 000).
    ///
    /// Sends the file in large chunks without holding it in memory, then
    /// closes the sending side and waits until the server closes: exit 0
    /// means the server has every byte.
    Ledger {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
        /// Transactions, one `NAME credit|debit AMOUNT` per line
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Join a presence server as NAME and print every list of names it sends (seed 001).
    ///
    /// Runs until the server closes the connection or Ctrl+C closes it.
    Presence {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
        /// Name to join as: 1 to 20 letters and digits
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Copy stdin to the server exactly, binary and of any size (seed 003).
    ///
    /// Then closes the sending side and waits until the server closes.
    Send {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
    },
    /// Send stdin line by line and print whatever the server replies (seeds 002, 004).
    ///
    /// At the end of stdin, waits until the server has answered and closed.
    Chat {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
    },
    /// Talk to a queue server: `put ITEM`, `peek`, `pop`, `size`, one per line (seed 001).
    ///
    /// Prints each answer: True/False, the item, `Queue is empty`, the count.
    /// Shows a `> ` prompt when stdin is a terminal. Ctrl+C or end of input
    /// ends it.
    Queue {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
    },
    /// The seed's bank menu: (1) Check Balance, (2) Withdraw, (3) Deposit (seed 002).
    ///
    /// Speaks UDP (--tcp for TCP); answers the server's challenge by asking
    /// for the username and the PIN (not echoed on a terminal). A reply that
    /// does not come within 2 s is asked again up to 3 times, then a
    /// one-line error and exit 1. End of input ends it.
    Atm {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
        /// Speak TCP instead of UDP
        #[arg(long)]
        tcp: bool,
    },
    /// Seed 004's menu: upper-case a sentence, your address, the server's request count and run time.
    ///
    /// Prints `Reply from server: ...` and `RTT = ... ms` for each request.
    /// `5`, end of input or Ctrl+C prints `Bye bye~` and exits 0.
    Menu {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
        /// Speak UDP: one datagram per request and per reply (resent after 2 s, 3 tries)
        #[arg(long)]
        udp: bool,
    },
    /// The `queue` REPL over gRPC, to `queue-grpc-server` (seed 001).
    ///
    /// Same commands and output as `queue`; a refused item (empty, with
    /// whitespace, over 65536 bytes) prints the server's `error:` reason.
    GrpcQueue {
        /// Server address: `HOST:PORT`, `[V6ADDR]:PORT`, or `PORT` (127.0.0.1)
        #[arg(value_name = "ADDR")]
        addr: Target,
    },
}

/// `Cli::parse()`, except that an invalid value (a bad ADDR) also shows
/// the usage line: clap adds it for missing or unknown arguments only, and
/// SPEC wants one on every usage error.
fn main() -> ExitCode {
    let cli: Cli = nonblocking::cli::parse_or_exit();
    let result = match &cli.command {
        Command::Ledger { addr, file } => client::run_ledger(addr, file),
        Command::Presence { addr, name } => client::run_presence(addr, name),
        Command::Send { addr } => client::run_send(addr),
        Command::Chat { addr } => client::run_chat(addr),
        Command::Queue { addr } => client::run_queue(addr),
        Command::Atm { addr, tcp } => client::atm::run_atm(addr, *tcp),
        Command::Menu { addr, udp } => client::menu::run_menu(addr, *udp),
        Command::GrpcQueue { addr } => client::run_grpc_queue(addr),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
