//! `LineFramer` throughput: many tiny lines (per-line overhead) against a few
//! long lines (memchr and copying), fed in 64 KiB reads like the reactor's.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nonblocking::framing::LineFramer;

const READ_BYTES: usize = 64 * 1024;
const TOTAL_BYTES: usize = 4 * 1024 * 1024;
const MAX_LINE: usize = 65_536;

/// `TOTAL_BYTES` of lines of `len` bytes each, newline included.
fn stream(len: usize) -> Vec<u8> {
    let mut line = vec![b'x'; len - 1];
    line.push(b'\n');
    line.iter()
        .copied()
        .cycle()
        .take(TOTAL_BYTES / len * len)
        .collect()
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("framing");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, len) in [
        ("tiny_8B_lines", 8),
        ("ledger_22B_lines", 22),
        ("long_32KiB_lines", 32 * 1024),
    ] {
        let data = stream(len);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut framer = LineFramer::new();
                let mut lines = 0u64;
                for chunk in data.chunks(READ_BYTES) {
                    framer
                        .push(black_box(chunk), MAX_LINE, |line| {
                            black_box(line);
                            lines += 1;
                            ControlFlow::Continue(())
                        })
                        .expect("every line fits --max-line");
                }
                lines
            })
        });
    }
    group.finish();
}

criterion_group!(benches, framing);
criterion_main!(benches);
