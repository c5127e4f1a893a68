//! The ledger's append-only journal (`--journal PATH`): crash safety.
//!
//! Every applied transaction is appended as one line. The server writes what
//! one loop pass applied in one `write` and one `fdatasync` (never one per
//! line), and only then sends any client its FIN, so a client that saw the
//! server close after its EOF knows everything it sent is durable. At start
//! the journal is replayed; a record torn by a crash (no newline yet) was
//! never acknowledged and is cut off, so the file always ends at a record
//! boundary and nothing is applied twice.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

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
}

impl Journal {
    /// Opens (or creates) the journal at `path`, hands every complete
    /// record (without its `\n`) to `replay` in order, cuts off a torn last
    /// record, and returns the journal ready for appends.
    ///
    /// # Errors
    /// Any I/O error opening, reading or truncating the file.
    pub fn open(path: &Path, mut replay: impl FnMut(&[u8])) -> io::Result<(Journal, Replayed)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut replayed = Replayed::default();
        let mut chunk = vec![0u8; 256 * 1024];
        let mut partial: Vec<u8> = Vec::new();
        // Offset just past the last complete record.
        let mut good_len: u64 = 0;
        loop {
            let n = match file.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let mut rest = &chunk[..n];
            while let Some(i) = memchr::memchr(b'\n', rest) {
                let (line, tail) = rest.split_at(i + 1);
                let record = &line[..i];
                if partial.is_empty() {
                    replay(record);
                    good_len += line.len() as u64;
                } else {
                    partial.extend_from_slice(record);
                    replay(&partial);
                    good_len += partial.len() as u64 + 1;
                    partial.clear();
                }
                replayed.records += 1;
                rest = tail;
            }
            partial.extend_from_slice(rest);
        }
        if !partial.is_empty() {
            replayed.torn_bytes = partial.len() as u64;
            file.set_len(good_len)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::Start(good_len))?;
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

    fn replay_all(path: &Path) -> (Vec<Vec<u8>>, Replayed, Journal) {
        let mut records = Vec::new();
        let (journal, replayed) = Journal::open(path, |r| records.push(r.to_vec())).unwrap();
        (records, replayed, journal)
    }

    #[test]
    fn appended_records_come_back_in_order_once() {
        let path = temp("order");
        let (records, _, mut journal) = replay_all(&path);
        assert!(records.is_empty());
        journal.append(b"a credit 1\nb debit 2\n").unwrap();
        journal.append(b"c credit 3\n").unwrap();
        drop(journal);
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
                torn_bytes: 0
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
        fs::write(&path, b"a credit 1\nb deb").unwrap();
        let (records, replayed, mut journal) = replay_all(&path);
        assert_eq!(records, vec![b"a credit 1".to_vec()]);
        assert_eq!(replayed.torn_bytes, b"b deb".len() as u64);
        journal.append(b"c credit 3\n").unwrap();
        drop(journal);
        assert_eq!(fs::read(&path).unwrap(), b"a credit 1\nc credit 3\n");
    }

    #[test]
    fn records_spanning_read_chunks_are_whole() {
        let path = temp("big");
        let mut data = Vec::new();
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
        assert_eq!(joined, data);
    }
}
