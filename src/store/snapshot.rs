//! A [`Store`] for a handler that persists its whole state each time (the
//! atm's accounts file): `put` keeps only the newest bytes, `sync` writes
//! them with [`crate::fsutil::write_atomic`] (temporary file, fsync, rename,
//! directory fsync). Ten changes in one loop pass cost one rewrite, and a
//! crash leaves either the old file or the new one, never a mix.

use std::io;
use std::path::PathBuf;

use super::Store;

#[derive(Debug)]
pub struct SnapshotStore {
    path: PathBuf,
    /// The newest snapshot not yet written.
    pending: Vec<u8>,
    dirty: bool,
}

impl SnapshotStore {
    /// The store for `path`, after removing the temporary files a crash
    /// left beside it (SPEC atm: "a temporary file a crash left behind is
    /// removed at the next start"), one diagnostic line each.
    ///
    /// # Errors
    /// The directory cannot be read or a temporary file cannot be removed.
    pub fn open(path: PathBuf) -> io::Result<SnapshotStore> {
        for name in crate::fsutil::remove_stale_temps(&path)? {
            crate::status::diag(format_args!(
                "removed {}, a temporary file an earlier run left behind",
                name.to_string_lossy()
            ));
        }
        Ok(SnapshotStore::new(path))
    }

    pub fn new(path: PathBuf) -> SnapshotStore {
        SnapshotStore {
            path,
            pending: Vec::new(),
            dirty: false,
        }
    }

    /// Whether a snapshot waits for the next sync.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

impl Store for SnapshotStore {
    /// Replaces any snapshot not yet synced (no I/O; the buffer is reused).
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.pending.clear();
        self.pending.extend_from_slice(bytes);
        self.dirty = true;
        Ok(())
    }

    /// Writes the newest snapshot atomically; nothing to do if none came
    /// since the last sync. On failure the snapshot stays pending.
    fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            crate::fsutil::write_atomic(&self.path, &self.pending)?;
            self.dirty = false;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-snapshot-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sync_writes_only_the_newest_put() {
        let dir = temp_dir("newest");
        let path = dir.join("accounts.txt");
        fs::write(&path, b"old\n").unwrap();
        let mut store = SnapshotStore::new(path.clone());
        store.put(b"first\n").unwrap();
        store.put(b"second\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"old\n", "put does no I/O");
        assert!(store.is_dirty());
        store.sync().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second\n");
        assert!(!store.is_dirty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sync_without_put_leaves_the_file_alone() {
        let dir = temp_dir("idle");
        let path = dir.join("accounts.txt");
        fs::write(&path, b"as given\n").unwrap();
        let mut store = SnapshotStore::new(path.clone());
        store.sync().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"as given\n");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_sync_keeps_the_snapshot_for_the_next() {
        let dir = temp_dir("fail");
        let path = dir.join("missing-dir").join("accounts.txt");
        let mut store = SnapshotStore::new(path.clone());
        store.put(b"a 1234 5\n").unwrap();
        assert!(store.sync().is_err());
        assert!(store.is_dirty());
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        store.sync().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"a 1234 5\n");
        fs::remove_dir_all(&dir).unwrap();
    }
}
