//! `--handler queue`: the line protocol's connection for the queue driver
//! in [`super::grpc`], so the line `queue` handler and `queue-grpc-server`
//! run the very same workload (put then pop per step, every answer checked).

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::grpc::QueueConn;

/// One TCP connection speaking `put ITEM` / `pop` / `size` lines.
pub struct LineConn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

impl LineConn {
    /// Sends `request` and returns the answer line without its `\n`.
    async fn ask(&mut self, request: &[u8]) -> Result<&str, String> {
        self.writer
            .write_all(request)
            .await
            .map_err(|e| format!("send: {e}"))?;
        self.line.clear();
        let n = self
            .reader
            .read_line(&mut self.line)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        Ok(self.line.trim_end_matches('\n'))
    }
}

impl QueueConn for LineConn {
    async fn open(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(LineConn {
            reader: BufReader::new(read),
            writer,
            line: String::new(),
        })
    }

    async fn put(&mut self, item: String) -> Result<bool, String> {
        let request = format!("put {item}\n");
        match self.ask(request.as_bytes()).await? {
            "True" => Ok(true),
            "False" => Ok(false),
            other => Err(format!("put answered {other:?}")),
        }
    }

    async fn pop(&mut self) -> Result<Option<String>, String> {
        match self.ask(b"pop\n").await? {
            "None" => Ok(None),
            item => Ok(Some(item.to_string())),
        }
    }

    async fn size(&mut self) -> Result<u64, String> {
        let answer = self.ask(b"size\n").await?;
        answer
            .parse()
            .map_err(|_| format!("size answered {answer:?}"))
    }
}
