//! Files a careless or hostile user hands the ledger (issue 15; SPEC
//! "Server options" `--log`, `--journal`): a symlink planted at the log's
//! temporary name, a device node, FIFO or symlink at `--log`, a log
//! directory that does not exist, `--log` equal to `--journal`, a journal
//! that is not ours (foreign text, a FIFO, a huge file with no newline).
//! Each case checks what a user sees: the exit status and the one-line
//! error, the files afterwards byte for byte.

#[macro_use]
mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::Path;
use std::process::{Command, ExitStatus};

use common::*;

every_server!(
    a_symlink_planted_at_the_old_temporary_name_is_not_followed,
    a_device_at_log_is_refused_at_start_and_stays_a_device,
    a_fifo_or_symlink_at_log_is_refused_at_start,
    log_in_a_missing_directory_exits_1_at_start,
    log_equal_to_journal_is_a_usage_error,
    a_foreign_journal_is_refused_and_left_byte_identical,
    a_torn_last_record_is_cut_and_nothing_else,
    a_journal_of_the_previous_version_is_still_replayed,
    a_fifo_journal_is_refused_without_hanging,
    a_huge_journal_without_newline_is_refused_in_bounded_memory,
);

/// What a run that is expected to end by itself left behind.
struct Ended {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `kind` with `args` (port 0 appended) in `dir` until it exits
/// (killed and failed after [`TIMEOUT`]). With `vm_kib`, under a
/// `ulimit -v` of that many KiB.
fn run_in(kind: Kind, dir: &Path, args: &[&str], vm_kib: Option<u64>) -> Ended {
    let mut cmd = match vm_kib {
        None => kind.command(dir),
        Some(kib) => {
            let mut cmd = Command::new("sh");
            cmd.current_dir(dir)
                .arg("-c")
                .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                .arg(kind.bin())
                .args(kind.extra_args());
            cmd
        }
    };
    cmd.args(args).arg("0");
    let (status, stdout, stderr) = wait_to_end(cmd, &format!("{} {args:?}", kind.name()));
    Ended {
        status,
        stdout,
        stderr,
    }
}

/// A start refused before listening: exit 1, nothing on stdout, one line
/// on stderr holding every one of `words`.
fn assert_refused(e: &Ended, words: &[&str]) {
    let what = format!(
        "status {:?}\nstdout {:?}\nstderr {:?}",
        e.status, e.stdout, e.stderr
    );
    assert_eq!(e.status.code(), Some(1), "{what}");
    assert!(!e.stdout.contains("Listening on"), "served anyway: {what}");
    let lines: Vec<&str> = e.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "want one line on stderr: {what}");
    for word in words {
        assert!(lines[0].contains(word), "the error lacks {word:?}: {what}");
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mkfifo {}", path.display());
}

fn a_symlink_planted_at_the_old_temporary_name_is_not_followed(kind: Kind) {
    let dir = TempDir::new(&format!("plant-{}", kind.name()));
    let victim = dir.join("victim");
    fs::write(&victim, b"precious bytes\n").unwrap();
    let dir_path = dir.path.clone();
    let mut s = Server::start_in(kind, &["-H", "ledger", "--log", "log.txt"], dir);
    // The name the log's temporary had before (`.NAME.tmp.PID`), and a few
    // around it, all pointing at the victim.
    let planted: Vec<_> = (s.pid() - 2..=s.pid() + 2)
        .map(|pid| dir_path.join(format!(".log.txt.tmp.{pid}")))
        .collect();
    for link in &planted {
        symlink(&victim, link).unwrap();
    }
    let mut c = s.connect();
    c.send(b"Marc credit $2\nMarc debit $1\n");
    c.shutdown_write();
    c.expect_eof();
    s.stop(SIGINT);
    assert_eq!(
        fs::read(&victim).unwrap(),
        b"precious bytes\n",
        "the victim changed"
    );
    assert_eq!(
        fs::read_to_string(dir_path.join("log.txt")).unwrap(),
        "Marc $1.00\n",
        "the log was not written\n{}",
        s.transcript()
    );
    for link in &planted {
        let meta = fs::symlink_metadata(link).unwrap();
        assert!(
            meta.file_type().is_symlink(),
            "{} was replaced",
            link.display()
        );
    }
    // Nothing but what was there and the log: no temporary left behind.
    let mut names: Vec<String> = fs::read_dir(&dir_path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".log.txt.tmp."))
        .collect();
    names.sort();
    assert_eq!(names, ["log.txt", "victim"]);
}

fn a_device_at_log_is_refused_at_start_and_stays_a_device(kind: Kind) {
    let dir = TempDir::new("dev");
    let e = run_in(
        kind,
        &dir.path,
        &["-H", "ledger", "--log", "/dev/null"],
        None,
    );
    assert_refused(&e, &["/dev/null", "not a regular file"]);
    let meta = fs::symlink_metadata("/dev/null").unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "/dev/null is no longer a device"
    );
}

fn a_fifo_or_symlink_at_log_is_refused_at_start(kind: Kind) {
    let dir = TempDir::new("logkinds");
    mkfifo(&dir.join("fifo"));
    fs::write(dir.join("target"), b"keep\n").unwrap();
    symlink("target", dir.join("link")).unwrap();
    fs::create_dir(dir.join("sub")).unwrap();
    for (name, word) in [
        ("fifo", "FIFO"),
        ("link", "symbolic link"),
        ("sub", "directory"),
    ] {
        let e = run_in(kind, &dir.path, &["-H", "ledger", "--log", name], None);
        assert_refused(&e, &[name, word]);
    }
    assert!(
        fs::symlink_metadata(dir.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        fs::symlink_metadata(dir.join("link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(dir.join("target")).unwrap(), b"keep\n");
}

fn log_in_a_missing_directory_exits_1_at_start(kind: Kind) {
    let dir = TempDir::new("missing");
    let e = run_in(
        kind,
        &dir.path,
        &["-H", "ledger", "--log", "no/such/dir/log.txt"],
        None,
    );
    assert_refused(&e, &["no/such/dir/log.txt", "does not exist"]);
    assert!(!dir.join("no").exists());
}

fn log_equal_to_journal_is_a_usage_error(kind: Kind) {
    let dir = TempDir::new("same");
    for args in [
        &["-H", "ledger", "--log", "log.txt", "--journal", "./log.txt"][..],
        &["-H", "ledger", "--journal", "log.txt"],
    ] {
        let e = run_in(kind, &dir.path, args, None);
        assert_eq!(e.status.code(), Some(2), "{args:?}: {:?}", e.stderr);
        assert!(e.stderr.contains("same file"), "{args:?}: {:?}", e.stderr);
        assert!(e.stderr.contains("Usage"), "{args:?}: {:?}", e.stderr);
        assert!(!dir.join("log.txt").exists(), "{args:?} created a file");
    }
}

fn a_foreign_journal_is_refused_and_left_byte_identical(kind: Kind) {
    let dir = TempDir::new("foreign");
    // Transactions a user meant to send, the last without its newline (the
    // old server cut it off as a torn record), and a file of prose.
    let cases: [(&str, &[u8], &str); 3] = [
        ("tx.txt", b"Marc credit 1\nMarc debit 2", "line 2"),
        ("notes.txt", b"shopping list\n", "line 1"),
        (
            "mixed",
            b"Marc credit 1\nnot a transaction\nAnn credit 2\n",
            "line 2",
        ),
    ];
    for (name, content, line) in cases {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        let e = run_in(kind, &dir.path, &["-H", "ledger", "--journal", name], None);
        assert_refused(&e, &[name, line]);
        assert_eq!(fs::read(&path).unwrap(), content, "{name} was modified");
    }
    assert!(!dir.join("log.txt").exists());
}

/// Runs the ledger on `journal` in `dir`, sends `lines`, stops it; returns
/// the log and the server's diagnostics.
fn run_ledger(kind: Kind, dir: &Path, journal: &str, lines: &[u8]) -> (String, Vec<String>) {
    let log = dir.join("log.txt");
    let journal = dir.join(journal);
    let mut s = Server::start(
        kind,
        &[
            "-H",
            "ledger",
            "--log",
            log.to_str().unwrap(),
            "--journal",
            journal.to_str().unwrap(),
        ],
    );
    if !lines.is_empty() {
        let mut c = s.connect();
        c.send(lines);
        c.shutdown_write();
        c.expect_eof();
    }
    s.stop(SIGINT);
    (fs::read_to_string(log).unwrap(), s.stderr_lines().to_vec())
}

fn a_torn_last_record_is_cut_and_nothing_else(kind: Kind) {
    let dir = TempDir::new("torn");
    let (log, _) = run_ledger(kind, &dir.path, "journal", b"Marc credit 1\n");
    assert_eq!(log, "Marc $1.00\n");
    let journal = dir.join("journal");
    let whole = fs::read(&journal).unwrap();
    // A crash in the middle of an append.
    let mut torn = whole.clone();
    torn.extend_from_slice(b"Marc credit 5");
    fs::write(&journal, &torn).unwrap();
    let (log, diags) = run_ledger(kind, &dir.path, "journal", b"");
    assert_eq!(log, "Marc $1.00\n", "the torn record was applied");
    assert!(
        diags.iter().any(|l| l.contains("torn")),
        "no diagnostic about the cut: {diags:?}"
    );
    assert_eq!(
        fs::read(&journal).unwrap(),
        whole,
        "more than the torn record was cut"
    );
}

fn a_journal_of_the_previous_version_is_still_replayed(kind: Kind) {
    let dir = TempDir::new("legacy");
    // The previous version wrote records only, no header.
    fs::write(dir.join("old"), b"Marc credit 2\nAnn debit 1.5\n").unwrap();
    let (log, diags) = run_ledger(kind, &dir.path, "old", b"Marc credit 1\n");
    assert_eq!(log, "Ann $-1.50\nMarc $3.00\n", "diagnostics: {diags:?}");
    assert_eq!(
        fs::read(dir.join("old")).unwrap(),
        b"Marc credit 2\nAnn debit 1.5\nMarc credit 1\n"
    );
}

fn a_fifo_journal_is_refused_without_hanging(kind: Kind) {
    let dir = TempDir::new("jfifo");
    mkfifo(&dir.join("fifo"));
    let e = run_in(
        kind,
        &dir.path,
        &["-H", "ledger", "--journal", "fifo"],
        None,
    );
    assert_refused(&e, &["fifo", "FIFO"]);
    assert!(
        fs::symlink_metadata(dir.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
}

fn a_huge_journal_without_newline_is_refused_in_bounded_memory(kind: Kind) {
    const GIB: u64 = 1 << 30;
    // 256 MiB of address space: a server that held the file's one line
    // in memory would die of it (a sparse file costs no disk).
    const VM_KIB: u64 = 256 * 1024;
    let dir = TempDir::new("huge");
    let bare = dir.join("bare");
    fs::File::create(&bare).unwrap().set_len(GIB).unwrap();
    // The same after a real journal's header.
    run_ledger(kind, &dir.path, "headed", b"");
    let headed = dir.join("headed");
    let header_len = fs::metadata(&headed).unwrap().len();
    assert!(header_len > 0, "a new journal is not empty (its header)");
    fs::OpenOptions::new()
        .write(true)
        .open(&headed)
        .unwrap()
        .set_len(header_len + GIB)
        .unwrap();
    for name in ["bare", "headed"] {
        let e = run_in(
            kind,
            &dir.path,
            &["-H", "ledger", "--journal", name],
            Some(VM_KIB),
        );
        assert_refused(&e, &[name, "line", "longer than"]);
    }
    assert_eq!(fs::metadata(&bare).unwrap().len(), GIB);
    assert_eq!(fs::metadata(&headed).unwrap().len(), header_len + GIB);
}
