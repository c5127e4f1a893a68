//! The ledger's append-only journal (`--journal PATH`): crash safety.
//!
//! Every applied transaction is appended as one line. The server writes what
//! one loop pass applied in one `write` and one `fdatasync` (never one per
//! line), and only then sends any client its FIN, so a client that saw the
//! server close after its EOF knows everything it sent is durable (a death
//! of the server resets its connections instead of closing them:
//! [`crate::net::set_reset_on_close`]). At start
//! the journal is replayed; a record torn by a crash (no newline yet) was
//! never acknowledged and is cut off, so the file always ends at a record
//! boundary and nothing is applied twice.
//!
//! The format: the header line [`HEADER`], then one record per line, each at
//! most [`MAX_RECORD_BYTES`] bytes before its `\n`. A journal is only ever
//! a regular file: the path is checked without following a symlink, opened
//! with `O_NOFOLLOW|O_NONBLOCK` (a FIFO never blocks the start) and the
//! opened file checked again. A file that is not a journal of ours (no
//! header and not every line a record, a line that is not a record, a line
//! over the limit) is refused with the line's number and never modified;
//! only a torn last record after our header is cut off. Reading is chunked
//! and a line is never held beyond the limit, so memory stays bounded
//! whatever the file holds.
//!
//! A journal written before the header existed (every line a record, the
//! last one ending in `\n`) is still accepted as it is, and stays
//! headerless.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::fsutil;

/// The first line of every journal this version creates.
pub const HEADER: &[u8] = b"# nonblocking journal v1\n";

/// The longest record, without its `\n` (16 times the default
/// `--max-line`; the server refuses `--journal` with a longer `--max-line`).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// An open journal, positioned for appending.
#[derive(Debug)]
pub struct Journal {
    file: File,
}

/// What replaying found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Complete records handed to the replay function.
    pub records: u64,
    /// Bytes of a torn last record that were cut off.
    pub torn_bytes: u64,
    /// The file has no header: a journal of an earlier version.
    pub headerless: bool,
}

impl Journal {
    /// Opens (or creates, with its header) the journal at `path`, hands
    /// every complete record (without its `\n`) to `replay` in order, cuts
    /// off a torn last record, and returns the journal ready for appends.
    /// `replay` returns whether the record is valid; one that is not makes
    /// the file foreign.
    ///
    /// # Errors
    /// Any I/O error opening, reading or truncating the file; `InvalidInput`
    /// when the path is not a regular file; `InvalidData` naming the line
    /// when the file is not a journal of ours (then the file is untouched,
    /// but `replay` may have seen the records before that line: the caller
    /// must not go on).
    pub fn open(
        path: &Path,
        mut replay: impl FnMut(&[u8]) -> bool,
    ) -> io::Result<(Journal, Replayed)> {
        let mut file = match open_regular(path)? {
            Opened::New(file) => return Journal::start_new(path, file, 0),
            Opened::Existing(file) => file,
        };
        let mut scan = Scan::default();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            scan.feed(&chunk[..n], &mut replay)?;
        }
        let mut replayed = Replayed {
            records: scan.records,
            torn_bytes: 0,
            headerless: scan.mode == Mode::Headerless,
        };
        match scan.mode {
            // Empty, or a header torn while the journal was being created.
            Mode::Unknown if HEADER.starts_with(&scan.partial) => {
                return Journal::start_new(path, file, scan.partial.len() as u64);
            }
            Mode::Unknown | Mode::Headerless if !scan.partial.is_empty() => {
                return Err(foreign(
                    scan.line,
                    "has no newline in a file without the journal header, so it is not a torn record",
                ));
            }
            Mode::Headered if !scan.partial.is_empty() => {
                replayed.torn_bytes = scan.partial.len() as u64;
                file.set_len(scan.good_len)?;
                file.sync_all()?;
            }
            _ => {}
        }
        file.seek(SeekFrom::Start(scan.good_len))?;
        Ok((Journal { file }, replayed))
    }

    /// Writes the header to a new (or empty, or torn-header) journal.
    fn start_new(path: &Path, mut file: File, torn: u64) -> io::Result<(Journal, Replayed)> {
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(HEADER)?;
        file.sync_all()?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        fsutil::sync_dir(dir)?;
        let replayed = Replayed {
            torn_bytes: torn,
            ..Replayed::default()
        };
        Ok((Journal { file }, replayed))
    }

    /// Appends `records` (whole lines) and makes them durable.
    ///
    /// # Errors
    /// Any I/O error; the caller must not acknowledge these records then.
    pub fn append(&mut self, records: &[u8]) -> io::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        self.write(records)?;
        self.sync()
    }

    /// Appends `records` without waiting for the disk (see [`Journal::sync`]).
    ///
    /// # Errors
    /// Any I/O error.
    pub fn write(&mut self, records: &[u8]) -> io::Result<()> {
        self.file.write_all(records)
    }

    /// Makes everything written so far durable.
    ///
    /// # Errors
    /// Any I/O error; nothing written since the last sync may be acknowledged.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

enum Opened {
    New(File),
    Existing(File),
}

/// Opens `path` read-write if it is a regular file, or creates it
/// (`O_EXCL`): never through a symlink, never blocking on a FIFO.
fn open_regular(path: &Path) -> io::Result<Opened> {
    const FLAGS: i32 = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .custom_flags(FLAGS)
                .open(path)
            {
                Ok(file) => return Ok(Opened::New(file)),
                // Created meanwhile: checked like any existing file below.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
        }
        Err(e) => return Err(e),
        Ok(m) if !m.file_type().is_file() => return Err(not_regular(&m.file_type())),
        Ok(_) => {}
    }
    // O_NONBLOCK: should a FIFO replace the file between the check and the
    // open, the open does not wait for a writer (on a regular file the
    // flag changes nothing).
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(FLAGS | libc::O_NONBLOCK)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    if !kind.is_file() {
        return Err(not_regular(&kind));
    }
    Ok(Opened::Existing(file))
}

fn not_regular(kind: &std::fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{}, not a regular file (a journal must be one)",
            fsutil::describe(kind)
        ),
    )
}

/// The refusal of a file that is not a journal of ours.
fn foreign(line: u64, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("line {line} {what}: not a nonblocking journal (the file was not modified)"),
    )
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No complete line yet.
    #[default]
    Unknown,
    /// The first line was [`HEADER`].
    Headered,
    /// The first line was a record: a journal of an earlier version.
    Headerless,
}

/// The reading state of [`Journal::open`]: lines split across chunks, the
/// line number, the offset after the last complete line.
#[derive(Debug)]
struct Scan {
    mode: Mode,
    /// The number of the line being read (1-based).
    line: u64,
    /// The bytes of that line read so far (at most [`MAX_RECORD_BYTES`]).
    partial: Vec<u8>,
    /// Offset just past the last complete line.
    good_len: u64,
    records: u64,
}

impl Default for Scan {
    fn default() -> Self {
        Scan {
            mode: Mode::Unknown,
            line: 1,
            partial: Vec::new(),
            good_len: 0,
            records: 0,
        }
    }
}

impl Scan {
    fn feed(&mut self, mut bytes: &[u8], replay: &mut impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        while !bytes.is_empty() {
            let (piece, complete) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], true),
                None => (bytes, false),
            };
            bytes = &bytes[piece.len() + usize::from(complete)..];
            if self.partial.len() + piece.len() > MAX_RECORD_BYTES {
                return Err(foreign(
                    self.line,
                    &format!("is longer than {MAX_RECORD_BYTES} bytes"),
                ));
            }
            if !complete {
                self.partial.extend_from_slice(piece);
                break;
            }
            if self.partial.is_empty() {
                self.line_done(piece, replay)?;
            } else {
                let mut line = std::mem::take(&mut self.partial);
                line.extend_from_slice(piece);
                self.line_done(&line, replay)?;
                line.clear();
                self.partial = line;
            }
        }
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], replay: &mut impl FnMut(&[u8]) -> bool) -> io::Result<()> {
        if self.mode == Mode::Unknown {
            if line == &HEADER[..HEADER.len() - 1] {
                self.mode = Mode::Headered;
                self.good_len = HEADER.len() as u64;
                self.line += 1;
                return Ok(());
            }
            self.mode = Mode::Headerless;
        }
        if !replay(line) {
            return Err(foreign(
                self.line,
                if self.mode == Mode::Headerless && self.line == 1 {
                    "is neither the journal header nor a valid record"
                } else {
                    "is not a valid record"
                },
            ));
        }
        self.records += 1;
        self.good_len += line.len() as u64 + 1;
        self.line += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-journal-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir.join("journal")
    }

    /// The tests' record grammar: printable ASCII and spaces, not empty,
    /// not starting with `#` (like the ledger's, it excludes any header).
    fn valid(r: &[u8]) -> bool {
        !r.is_empty() && r[0] != b'#' && r.iter().all(|&b| b.is_ascii_graphic() || b == b' ')
    }

    fn open_all(path: &Path) -> io::Result<(Vec<Vec<u8>>, Replayed, Journal)> {
        let mut records = Vec::new();
        let (journal, replayed) = Journal::open(path, |r| {
            records.push(r.to_vec());
            valid(r)
        })?;
        Ok((records, replayed, journal))
    }

    fn replay_all(path: &Path) -> (Vec<Vec<u8>>, Replayed, Journal) {
        open_all(path).unwrap()
    }

    fn headed(body: &[u8]) -> Vec<u8> {
        [HEADER, body].concat()
    }

    /// Opening `content` is refused naming `line`, and the file is unchanged.
    fn assert_refused(tag: &str, content: &[u8], line: u64) {
        let path = temp(tag);
        fs::write(&path, content).unwrap();
        let err = open_all(&path).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{tag}: {err}");
        let text = err.to_string();
        assert!(text.starts_with(&format!("line {line} ")), "{tag}: {text}");
        assert!(text.contains("not a nonblocking journal"), "{tag}: {text}");
        assert!(
            fs::read(&path).unwrap() == content,
            "{tag}: the file changed"
        );
    }

    #[test]
    fn appended_records_come_back_in_order_once() {
        let path = temp("order");
        let (records, _, mut journal) = replay_all(&path);
        assert!(records.is_empty());
        journal.append(b"a credit 1\nb debit 2\n").unwrap();
        journal.append(b"c credit 3\n").unwrap();
        drop(journal);
        assert_eq!(
            fs::read(&path).unwrap(),
            headed(b"a credit 1\nb debit 2\nc credit 3\n"),
            "a new journal starts with the header"
        );
        let (records, replayed, mut journal) = replay_all(&path);
        assert_eq!(
            records,
            vec![
                b"a credit 1".to_vec(),
                b"b debit 2".to_vec(),
                b"c credit 3".to_vec()
            ]
        );
        assert_eq!(
            replayed,
            Replayed {
                records: 3,
                torn_bytes: 0,
                headerless: false
            }
        );
        // A second restart sees the same records, plus only what was added.
        journal.append(b"d credit 4\n").unwrap();
        drop(journal);
        let (records, _, _) = replay_all(&path);
        assert_eq!(records.len(), 4);
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_appends_continue_cleanly() {
        let path = temp("torn");
        // Torn records need not be valid ones: "\xff" is not.
        fs::write(&path, headed(b"a credit 1\nb deb\xff")).unwrap();
        let (records, replayed, mut journal) = replay_all(&path);
        assert_eq!(records, vec![b"a credit 1".to_vec()]);
        assert_eq!(replayed.torn_bytes, b"b deb\xff".len() as u64);
        journal.append(b"c credit 3\n").unwrap();
        drop(journal);
        assert_eq!(
            fs::read(&path).unwrap(),
            headed(b"a credit 1\nc credit 3\n")
        );
    }

    #[test]
    fn an_empty_file_or_a_torn_header_becomes_a_new_journal() {
        for (tag, content) in [("empty", &b""[..]), ("torn-header", &HEADER[..7])] {
            let path = temp(tag);
            fs::write(&path, content).unwrap();
            let (records, replayed, _) = replay_all(&path);
            assert!(records.is_empty());
            assert_eq!(replayed.torn_bytes, content.len() as u64, "{tag}");
            assert_eq!(fs::read(&path).unwrap(), HEADER, "{tag}");
        }
    }

    #[test]
    fn records_spanning_read_chunks_are_whole() {
        let path = temp("big");
        let mut data = HEADER.to_vec();
        for i in 0..40_000 {
            data.extend_from_slice(format!("name{i} credit {i}.25\n").as_bytes());
        }
        fs::write(&path, &data).unwrap();
        let (records, replayed, _) = replay_all(&path);
        assert_eq!(replayed.records, 40_000);
        assert_eq!(records[39_999], b"name39999 credit 39999.25".to_vec());
        let joined: Vec<u8> = records
            .iter()
            .flat_map(|r| r.iter().copied().chain([b'\n']))
            .collect();
        assert_eq!(joined, data[HEADER.len()..]);
    }

    #[test]
    fn a_headerless_journal_of_records_is_accepted_and_kept_headerless() {
        let path = temp("legacy");
        fs::write(&path, b"a credit 1\nb debit 2\n").unwrap();
        let (records, replayed, mut journal) = replay_all(&path);
        assert_eq!(records.len(), 2);
        assert!(replayed.headerless);
        journal.append(b"c credit 3\n").unwrap();
        drop(journal);
        assert_eq!(
            fs::read(&path).unwrap(),
            b"a credit 1\nb debit 2\nc credit 3\n"
        );
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused_naming_the_line_and_left_alone() {
        assert_refused("no-header", b"hello\n\x01binary\n", 2);
        assert_refused("first-line", b"\x7fELF\n", 1);
        assert_refused("blank-line", &headed(b"a credit 1\n\nb credit 2\n"), 3);
        assert_refused("bad-record", &headed(b"a credit 1\n\x00\x00\n"), 3);
        // Without the header an unterminated last line may be a user's
        // data, not a torn record: not cut.
        assert_refused("legacy-tail", b"a credit 1\nb credit 2", 2);
        assert_refused("one-line", b"a credit 1", 1);
        // A header of another version is not ours.
        assert_refused("v2", b"# nonblocking journal v2\na credit 1\n", 1);
    }

    #[test]
    fn records_over_the_limit_are_refused_complete_or_torn() {
        let max = vec![b'a'; MAX_RECORD_BYTES];
        let path = temp("max");
        fs::write(&path, headed(&[&max[..], b"\n"].concat())).unwrap();
        assert_eq!(
            replay_all(&path).1.records,
            1,
            "exactly the limit is a record"
        );
        let over = vec![b'a'; MAX_RECORD_BYTES + 1];
        assert_refused("over", &headed(&[&over[..], b"\n"].concat()), 2);
        assert_refused("over-torn", &headed(&over), 2);
        assert_refused("over-no-header", &over, 1);
    }

    #[test]
    fn only_a_regular_file_is_a_journal() {
        use std::os::unix::fs::symlink;
        let path = temp("kinds");
        let dir = path.parent().unwrap().to_path_buf();
        let victim = dir.join("victim");
        fs::write(&victim, b"precious\n").unwrap();
        symlink(&victim, &path).unwrap();
        let err = open_all(&path).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious\n");
        // A FIFO would block an open for reading until a writer comes.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let err = open_all(&fifo).map(|_| ()).unwrap_err();
            assert!(err.to_string().contains("FIFO"), "{err}");
        }
        let err = open_all(&dir).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let err = open_all(Path::new("/dev/null")).map(|_| ()).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
    }
}
