//! The atm's durable accounts: the user's accounts file (`--accounts
//! PATH`) as a snapshot, plus a change log beside it (`PATH.log`), so the
//! cost of a change does not depend on the size of the file.
//!
//! - A change is one appended record, `NAME BALANCE\n` (the new balance,
//!   never a difference, and never a PIN: SPEC keeps PINs out of every file
//!   but `--accounts`). [`Store::put`] writes the records, [`Store::sync`]
//!   fdatasyncs them before any reply that follows leaves.
//! - Replay is idempotent: a record sets a balance, so a record replayed
//!   over a snapshot that already holds it changes nothing. That is what
//!   makes every crash window safe below.
//! - Compaction folds the log into the snapshot: the snapshot is rewritten
//!   atomically ([`crate::fsutil::write_atomic`]: temporary file, fsync,
//!   rename, directory fsync), and only then is the log removed. A crash
//!   between the two leaves the new snapshot and the old log, which replays
//!   to the same accounts. It runs at start when a log exists, and after a
//!   sync when the log has grown past the snapshot's size, so the log costs
//!   at most the snapshot's size on disk and compaction's work is spread
//!   over at least as many bytes of changes.
//! - A torn last record (no `\n`: the process died mid-write) was never
//!   synced, so never acknowledged: it is ignored, and the compaction at
//!   start drops it. Any other bad record stops the start, naming the log
//!   and the line, like a bad line of the accounts file.
//!
//! `PATH.log` exists only while it holds changes the snapshot lacks; the
//! accounts file stays the user's readable file, one line per account.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;

use super::Store;
use crate::handlers::atm::accounts::{Accounts, ParseError, parse_balance, push_balance};

/// The change log's name: the accounts file's with `.log` added.
pub fn log_path(accounts: &Path) -> PathBuf {
    let mut name = accounts.as_os_str().to_owned();
    name.push(".log");
    PathBuf::from(name)
}

/// Appends one change record, `NAME BALANCE\n`, to `out`.
pub fn push_record(out: &mut Vec<u8>, name: &str, balance: Decimal) {
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    push_balance(out, balance);
    out.push(b'\n');
}

/// One record's NAME and balance, or why it is not one.
fn parse_record(line: &[u8]) -> Result<(&[u8], Decimal), &'static str> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let (Some(name), Some(balance), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err("expected `NAME BALANCE`");
    };
    let balance = parse_balance(balance).ok_or("BALANCE is not an amount in whole cents")?;
    Ok((name, balance))
}

/// Applies the records in `log` to `accounts`, in order.
///
/// Returns the number of bytes of a torn last record (one with no `\n`),
/// which is ignored.
///
/// # Errors
/// The first complete record that does not parse, names no account, or
/// sets a balance the accounts file could not hold.
pub fn replay(accounts: &mut Accounts, log: &[u8]) -> Result<usize, ParseError> {
    let complete = log.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for (i, line) in log[..complete].split_inclusive(|&b| b == b'\n').enumerate() {
        let line = &line[..line.len() - 1];
        let fail = |reason: &str| ParseError {
            line: i + 1,
            reason: reason.to_string(),
        };
        let (name, balance) = parse_record(line).map_err(fail)?;
        let index = accounts
            .find(name)
            .ok_or_else(|| fail("NAME is not in the accounts file"))?;
        accounts
            .set_balance(index, balance)
            .map_err(|e| fail(&e.to_string()))?;
    }
    Ok(log.len() - complete)
}

/// Why the accounts could not be loaded at start.
#[derive(Debug)]
pub enum LoadError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    Parse {
        path: PathBuf,
        source: ParseError,
    },
    Log {
        path: PathBuf,
        source: ParseError,
    },
    /// Removing a crash's temporary files, or folding the log, failed.
    Files {
        path: PathBuf,
        source: io::Error,
    },
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Read { path, source } => write!(
                f,
                "cannot read accounts file {}: {}",
                path.display(),
                crate::net::os_reason(source)
            ),
            LoadError::Parse { path, source } => {
                write!(f, "accounts file {} {source}", path.display())
            }
            LoadError::Log { path, source } => {
                write!(f, "accounts change log {} {source}", path.display())
            }
            LoadError::Files { path, source } => write!(
                f,
                "cannot tidy accounts file {} and its change log: {}",
                path.display(),
                crate::net::os_reason(source)
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// The accounts as they were after the last change that reached the disk:
/// the snapshot at `path`, then its change log replayed. Reads only.
///
/// Returns the accounts, whether a log was found, and the bytes of a torn
/// last record ignored.
///
/// # Errors
/// [`LoadError`] (a missing log is not one).
pub fn read(path: &Path) -> Result<(Accounts, bool, usize), LoadError> {
    let text = fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut accounts = Accounts::parse(&text).map_err(|source| LoadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let log = log_path(path);
    let bytes = match fs::read(&log) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((accounts, false, 0)),
        Err(source) => return Err(LoadError::Read { path: log, source }),
    };
    let torn = replay(&mut accounts, &bytes).map_err(|source| LoadError::Log {
        path: log.clone(),
        source,
    })?;
    Ok((accounts, true, torn))
}

/// The store: writes records to the log, and compacts.
#[derive(Debug)]
pub struct AccountsLogStore {
    /// The accounts file, the snapshot.
    path: PathBuf,
    /// `PATH.log`.
    log_path: PathBuf,
    /// Open while the log exists (created at the first change after a
    /// compaction), opened `O_APPEND`.
    log: Option<File>,
    /// The log was created since the last sync: its directory entry must
    /// be made durable too, or a crash could lose the whole file.
    created: bool,
    /// Bytes in the log.
    log_len: u64,
    /// Bytes in the snapshot: past this, the log is compacted.
    snapshot_len: u64,
    /// The newest balance of every account changed since the last
    /// compaction (bounded by the log's size, itself bounded by the
    /// snapshot's): compaction applies these to the snapshot.
    changed: HashMap<String, Decimal>,
}

impl AccountsLogStore {
    /// Opens the accounts at `path`: removes the temporary files a crash
    /// left beside it (SPEC atm), reads the snapshot and replays its log,
    /// then, if there was a log, compacts it. Returns the accounts, the
    /// store, and lines for stderr about what start-up found.
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn open(path: &Path) -> Result<(Accounts, AccountsLogStore, Vec<String>), LoadError> {
        let mut notes = Vec::new();
        let files_err = |source| LoadError::Files {
            path: path.to_path_buf(),
            source,
        };
        // A missing accounts file is reported by `read`, not here.
        if path.exists() {
            for name in crate::fsutil::remove_stale_temps(path).map_err(files_err)? {
                notes.push(format!(
                    "removed {}, a temporary file an earlier run left behind",
                    name.to_string_lossy()
                ));
            }
        }
        let (accounts, had_log, torn) = read(path)?;
        let log_path = log_path(path);
        if torn > 0 {
            notes.push(format!(
                "ignored a torn last record ({torn} bytes) in {}: it was never acknowledged",
                log_path.display()
            ));
        }
        let mut store = AccountsLogStore {
            path: path.to_path_buf(),
            log_path,
            log: None,
            created: false,
            log_len: 0,
            snapshot_len: fs::metadata(path).map_err(files_err)?.len(),
            changed: HashMap::new(),
        };
        if had_log {
            store.fold(&accounts).map_err(files_err)?;
        }
        Ok((accounts, store, notes))
    }

    /// Writes `accounts` as the snapshot, then removes the log (see the
    /// module doc for why this order is safe).
    fn fold(&mut self, accounts: &Accounts) -> io::Result<()> {
        // Closed first: the rewrite then needs no more descriptors than the
        // server keeps for a file write (see `crate::limits`).
        self.log = None;
        let rendered = accounts.render();
        crate::fsutil::write_atomic(&self.path, &rendered)?;
        self.snapshot_len = rendered.len() as u64;
        match fs::remove_file(&self.log_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // The removal need not be durable: a log that comes back replays
        // over the new snapshot to the same accounts.
        self.log_len = 0;
        self.created = false;
        self.changed.clear();
        Ok(())
    }

    /// Folds the changes since the last compaction into the snapshot.
    fn compact(&mut self) -> io::Result<()> {
        let text = fs::read(&self.path)?;
        let mut accounts = Accounts::parse(&text).map_err(invalid)?;
        for (name, balance) in &self.changed {
            let index = accounts
                .find(name.as_bytes())
                .ok_or_else(|| invalid("a change names no account"))?;
            accounts.set_balance(index, *balance).map_err(invalid)?;
        }
        self.fold(&accounts)
    }

    /// Bytes in the log now.
    pub fn log_len(&self) -> u64 {
        self.log_len
    }

    fn log(&mut self) -> io::Result<&mut File> {
        if self.log.is_none() {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&self.log_path)?;
            self.log_len = file.metadata()?.len();
            self.created = true;
            self.log = Some(file);
        }
        Ok(self.log.as_mut().expect("opened above"))
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Store for AccountsLogStore {
    /// Appends change records (whole `NAME BALANCE\n` lines) to the log:
    /// written, not yet synced.
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let (name, balance) = parse_record(line).map_err(invalid)?;
            self.changed
                .insert(String::from_utf8_lossy(name).into_owned(), balance);
        }
        self.log()?.write_all(bytes)?;
        self.log_len += bytes.len() as u64;
        Ok(())
    }

    /// fdatasyncs the log (and, once, its directory entry); then compacts
    /// if the log has grown past the snapshot.
    fn sync(&mut self) -> io::Result<()> {
        let Some(log) = &self.log else {
            return Ok(());
        };
        log.sync_data()?;
        if self.created {
            let dir = match self.log_path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir,
                _ => Path::new("."),
            };
            crate::fsutil::sync_dir(dir)?;
            self.created = false;
        }
        if self.log_len > self.snapshot_len {
            self.compact()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-acclog-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn balance(accounts: &Accounts, name: &str) -> String {
        crate::handlers::atm::money(accounts.balance(name).unwrap())
    }

    #[test]
    fn records_replay_in_order_and_a_torn_tail_is_ignored() {
        let mut a = Accounts::parse(b"ada 1234 1\nbob 5678 2\n").unwrap();
        assert_eq!(replay(&mut a, b"ada 5\nbob -3.50\nada 7\nbob 12"), Ok(6));
        assert_eq!(balance(&a, "ada"), "7");
        assert_eq!(
            balance(&a, "bob"),
            "-3.50",
            "the torn `bob 12` is not applied"
        );
    }

    #[test]
    fn a_bad_complete_record_is_named_by_line() {
        for (log, line) in [
            (&b"ada 5\nzed 1\n"[..], 2),
            (b"ada 5 6\n", 1),
            (b"ada 1.005\n", 1),
            (b"ada 5\n\n", 2),
        ] {
            let mut a = Accounts::parse(b"ada 1234 1\n").unwrap();
            let err = replay(&mut a, log).unwrap_err();
            assert_eq!(err.line, line, "{:?}", String::from_utf8_lossy(log));
        }
    }

    #[test]
    fn a_change_is_an_append_and_the_log_is_compacted_past_the_snapshot_size() {
        let dir = temp_dir("compact");
        let path = dir.join("accounts.txt");
        // 24 bytes of snapshot.
        fs::write(&path, "ada 1234 0\nbob 5678 $2\n").unwrap();
        let (_, mut store, notes) = AccountsLogStore::open(&path).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let log = log_path(&path);
        assert!(!log.exists(), "no log until a change");
        store.put(b"ada 10\n").unwrap();
        store.sync().unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"ada 10\n");
        assert_eq!(
            fs::read(&path).unwrap(),
            b"ada 1234 0\nbob 5678 $2\n",
            "the snapshot is untouched by a change"
        );
        store.put(b"ada 20\nbob 3\n").unwrap();
        store.sync().unwrap();
        assert_eq!(store.log_len(), 20);
        store.put(b"ada 30\n").unwrap();
        store.sync().unwrap();
        // 27 bytes of log > 24 of snapshot: folded, the log gone.
        assert!(!log.exists());
        assert_eq!(store.log_len(), 0);
        assert_eq!(fs::read(&path).unwrap(), b"ada 1234 30\nbob 5678 3\n");
        let (accounts, had_log, _) = read(&path).unwrap();
        assert!(!had_log);
        assert_eq!(balance(&accounts, "ada"), "30");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_replays_the_log_then_folds_it_and_drops_a_torn_tail() {
        let dir = temp_dir("start");
        let path = dir.join("accounts.txt");
        fs::write(&path, "ada 1234 0\nbob 5678 2\n").unwrap();
        let log = log_path(&path);
        fs::write(&log, "ada 5\nbob 9\nada 6").unwrap();
        let (accounts, mut store, notes) = AccountsLogStore::open(&path).unwrap();
        assert_eq!(balance(&accounts, "ada"), "5");
        assert_eq!(balance(&accounts, "bob"), "9");
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("torn") && notes[0].contains("5 bytes"));
        assert!(!log.exists(), "folded at start");
        assert_eq!(fs::read(&path).unwrap(), b"ada 1234 5\nbob 5678 9\n");
        // The next change starts a new log.
        store.put(b"bob 1\n").unwrap();
        store.sync().unwrap();
        assert_eq!(fs::read(&log).unwrap(), b"bob 1\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_crash_between_the_new_snapshot_and_the_log_removal_replays_the_same() {
        let dir = temp_dir("window");
        let path = dir.join("accounts.txt");
        // The snapshot already folded the log, which was not yet removed.
        fs::write(&path, "ada 1234 5\nbob 5678 9\n").unwrap();
        fs::write(log_path(&path), "ada 4\nbob 9\nada 5\n").unwrap();
        let (accounts, _, _) = AccountsLogStore::open(&path).unwrap();
        assert_eq!(balance(&accounts, "ada"), "5");
        assert_eq!(balance(&accounts, "bob"), "9");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_log_stops_the_start_naming_it() {
        let dir = temp_dir("bad");
        let path = dir.join("accounts.txt");
        fs::write(&path, "ada 1234 0\n").unwrap();
        fs::write(log_path(&path), "ada 5\nnobody 1\n").unwrap();
        let err = AccountsLogStore::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("accounts.txt.log") && err.contains("line 2"),
            "{err}"
        );
        assert_eq!(fs::read(&path).unwrap(), b"ada 1234 0\n", "left alone");
        fs::remove_dir_all(&dir).unwrap();
    }
}
