//! Writing files so that a crash never leaves a half-written one, and so
//! that a hostile neighbour in the same directory cannot turn the write
//! against another file.
//!
//! Every file a server writes (the ledger's `--log`, the atm's accounts)
//! goes through [`write_atomic`]: a temporary file with an unpredictable
//! name, created with `O_CREAT|O_EXCL|O_NOFOLLOW` in the same directory (a
//! symlink planted there is never followed), fsync'd, renamed over the
//! target, then the directory fsync'd. Only a regular file (or nothing) is
//! ever replaced: a symlink, directory, FIFO, socket or device node at the
//! target is an error. [`check_output_path`] checks the same at start, so a
//! server never serves for hours and then fails to write its file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many temporary names are tried before giving up (each name is 64
/// random bits, so a collision means someone is creating them on purpose).
const TEMP_ATTEMPTS: usize = 16;

/// Writes `bytes` to a temporary file beside `path`, fsyncs it, renames it
/// over `path`, then fsyncs the directory so the rename itself is durable.
/// An existing file keeps its permission bits.
///
/// # Errors
/// Any I/O error, or `path` is something other than a regular file (a
/// symlink included); the temporary file is removed on failure and `path`
/// is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let mode = existing_regular_mode(path)?;
    let (tmp, mut file) = create_temp(&dir, &name)?;
    let result = (|| {
        if let Some(mode) = mode {
            file.set_permissions(fs::Permissions::from_mode(mode & 0o7777))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        // Checked again just before the rename: something may have been
        // put there since the start.
        existing_regular_mode(path)?;
        fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The start-up check for a file the server will write later (`--log`):
/// the path names a file, is a regular file or absent (not a symlink,
/// directory, FIFO, socket or device), and its directory exists and lets us
/// create a file (tested by creating and removing one: permission bits do
/// not tell, root ignores them).
///
/// # Errors
/// The reason, in words (the caller names the path).
pub fn check_output_path(path: &Path) -> Result<(), String> {
    let (dir, name) = split(path).map_err(|e| e.to_string())?;
    existing_regular_mode(path).map_err(|e| reason(&e))?;
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!("directory {} does not exist", dir.display()));
        }
        Err(e) => return Err(format!("directory {}: {}", dir.display(), reason(&e))),
    }
    let (tmp, file) = create_temp(&dir, &name).map_err(|e| {
        format!(
            "cannot create a file in directory {}: {}",
            dir.display(),
            reason(&e)
        )
    })?;
    drop(file);
    let _ = fs::remove_file(&tmp);
    Ok(())
}

/// Whether two paths name the same file: equal once the directory is
/// resolved (`./log.txt` and `log.txt`), or the same existing file (a hard
/// link). Paths that cannot be resolved are compared as written.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if resolve(a) == resolve(b) {
        return true;
    }
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

/// `path` with its directory canonicalized and its file name kept as is
/// (the file itself may not exist yet, and a symlink there is refused
/// elsewhere, not resolved).
fn resolve(path: &Path) -> PathBuf {
    match split(path) {
        Ok((dir, name)) => match fs::canonicalize(&dir) {
            Ok(dir) => dir.join(name),
            Err(_) => path.to_path_buf(),
        },
        Err(_) => path.to_path_buf(),
    }
}

/// Refuses anything but a regular file or nothing at `path`, without
/// following a symlink; returns the existing file's mode.
///
/// # Errors
/// `InvalidInput` naming what is there; other I/O errors as they come.
pub fn existing_regular_mode(path: &Path) -> io::Result<Option<u32>> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(Some(m.permissions().mode())),
        Ok(m) => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}, not a regular file", describe(&m.file_type())),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// What a non-regular file is, in words.
pub fn describe(t: &fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link (never followed)"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "an unknown kind of file"
    }
}

/// The directory (`.` for a bare name) and file name of `path`.
fn split(path: &Path) -> io::Result<(PathBuf, OsString)> {
    // `Path` reads `new/` and `new/.` as `new`; rename does not: the name
    // must be the path's last bytes.
    let bytes = path.as_os_str().as_bytes();
    let last = &bytes[bytes.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1)..];
    let name = path
        .file_name()
        .filter(|n| n.as_bytes() == last)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file (it is empty or ends in `/`, `.` or `..`)",
            )
        })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name.to_os_string()))
}

/// Removes the temporary files [`write_atomic`] left beside `path` when the
/// process died between creating one and renaming it (SIGKILL, power loss):
/// exactly the names it makes (`.<name>.tmp.` and 16 hex digits), regular
/// files only, never through a symlink. Returns the names removed.
///
/// # Errors
/// The directory cannot be read, or a temporary file cannot be removed.
pub fn remove_stale_temps(path: &Path) -> io::Result<Vec<OsString>> {
    let (dir, name) = split(path)?;
    let stem = &name.as_bytes()[..name.len().min(200)];
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(stem);
    prefix.extend_from_slice(b".tmp.");
    let mut removed = Vec::new();
    for entry in fs::read_dir(&dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(suffix) = file_name.as_bytes().strip_prefix(&prefix[..]) else {
            continue;
        };
        let ours = suffix.len() == 16 && suffix.iter().all(u8::is_ascii_hexdigit);
        // `DirEntry::file_type` does not follow a symlink.
        if ours && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed.push(file_name);
        }
    }
    Ok(removed)
}

/// Creates `.<name>.tmp.<random>` in `dir` with `O_CREAT|O_EXCL|O_NOFOLLOW`:
/// never an existing file, never through a symlink.
fn create_temp(dir: &Path, name: &OsString) -> io::Result<(PathBuf, File)> {
    // Keep the temporary name within NAME_MAX (255) whatever `name` is.
    let stem = &name.as_bytes()[..name.len().min(200)];
    let mut last = None;
    for _ in 0..TEMP_ATTEMPTS {
        let mut tmp_name = OsString::from(".");
        tmp_name.push(std::ffi::OsStr::from_bytes(stem));
        tmp_name.push(format!(".tmp.{:016x}", random_u64()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary name was free")))
}

/// 64 unpredictable bits: from the kernel, or else from std's randomly
/// keyed hasher mixed with the time (still unguessable from outside).
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok()
    {
        return u64::from_ne_bytes(bytes);
    }
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// fsyncs a directory so a rename or creation in it is durable. A
/// filesystem that cannot fsync a directory (EINVAL) is not an error.
///
/// # Errors
/// Opening the directory failed, or its fsync failed for another reason.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    match d.sync_all() {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// An I/O error in words, without Rust's " (os error N)" suffix.
fn reason(err: &io::Error) -> String {
    crate::net::os_reason(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("nb-fsutil-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn names(dir: &Path) -> Vec<OsString> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = temp("replace");
        let path = dir.join("log.txt");
        fs::write(&path, b"old").unwrap();
        write_atomic(&path, b"Marc $100.00\n").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"Marc $100.00\n");
        assert_eq!(names(&dir), vec![OsString::from("log.txt")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keeps_the_permissions_of_the_file_it_replaces() {
        let dir = temp("mode");
        let path = dir.join("accounts");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        write_atomic(&path, b"new").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_symlink_planted_at_the_old_temporary_name_is_not_followed() {
        let dir = temp("plant");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let path = dir.join("log.txt");
        let old_name = dir.join(format!(".log.txt.tmp.{}", std::process::id()));
        symlink(&victim, &old_name).unwrap();
        write_atomic(&path, b"a $1.00\n").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(&path).unwrap(), b"a $1.00\n");
        assert!(
            fs::symlink_metadata(&old_name)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_differ_and_never_reuse_a_file() {
        let dir = temp("names");
        let name = OsString::from("log.txt");
        let (a, fa) = create_temp(&dir, &name).unwrap();
        let (b, fb) = create_temp(&dir, &name).unwrap();
        assert_ne!(a, b);
        drop((fa, fb));
        // A very long name still gives a usable temporary name.
        let long = OsString::from("x".repeat(250));
        let (c, _) = create_temp(&dir, &long).unwrap();
        assert!(c.file_name().unwrap().len() <= 255);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn anything_but_a_regular_file_is_never_replaced() {
        let dir = temp("kinds");
        let victim = dir.join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.join("link");
        symlink(&victim, &link).unwrap();
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap();
        for path in [&link, &sub] {
            let err = write_atomic(path, b"x").unwrap_err();
            assert!(err.to_string().contains("not a regular file"), "{err}");
            let err = check_output_path(path).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(sub.is_dir());
        // No temporary left behind.
        assert_eq!(
            names(&dir),
            vec![
                OsString::from("link"),
                OsString::from("sub"),
                OsString::from("victim")
            ]
        );
        // A character device (exists on every Linux).
        let err = check_output_path(Path::new("/dev/null")).unwrap_err();
        assert!(err.contains("character device"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn check_output_path_wants_an_existing_directory_and_a_file_name() {
        let dir = temp("check");
        assert_eq!(check_output_path(&dir.join("log.txt")), Ok(()));
        fs::write(dir.join("log.txt"), b"old").unwrap();
        assert_eq!(check_output_path(&dir.join("log.txt")), Ok(()));
        let err = check_output_path(&dir.join("missing/log.txt")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let err = check_output_path(&dir.join("log.txt/x")).unwrap_err();
        assert!(err.to_lowercase().contains("not a directory"), "{err}");
        for bad in ["", "/", "new/", "..", "x/."] {
            let err = check_output_path(Path::new(bad)).expect_err(bad);
            assert!(err.contains("names no file"), "{bad:?}: {err}");
        }
        // The check leaves nothing behind.
        assert_eq!(names(&dir), vec![OsString::from("log.txt")]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = temp("stale");
        let path = dir.join("accounts.txt");
        fs::write(&path, b"kept").unwrap();
        let (tmp, file) = create_temp(&dir, &OsString::from("accounts.txt")).unwrap();
        drop(file);
        fs::write(dir.join(".accounts.txt.tmp.short"), b"x").unwrap();
        fs::write(dir.join(".other.txt.tmp.0123456789abcdef"), b"x").unwrap();
        std::os::unix::fs::symlink(&path, dir.join(".accounts.txt.tmp.fedcba9876543210")).unwrap();
        let removed = remove_stale_temps(&path).unwrap();
        assert_eq!(removed, vec![tmp.file_name().unwrap().to_os_string()]);
        assert!(!tmp.exists());
        assert_eq!(names(&dir).len(), 4, "{:?}", names(&dir));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_file_resolves_the_directory() {
        let dir = temp("same");
        let a = dir.join("log.txt");
        let b = dir.join("./sub/../log.txt");
        fs::create_dir(dir.join("sub")).unwrap();
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &dir.join("journal")));
        fs::write(&a, b"x").unwrap();
        fs::hard_link(&a, dir.join("other")).unwrap();
        assert!(same_file(&a, &dir.join("other")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
