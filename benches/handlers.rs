//! Handlers alone, no sockets: the ledger's parse + apply per line, and a
//! presence broadcast at 1,000 joined clients. Called through the `Handler`
//! trait, as the servers call them.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nonblocking::handlers::ledger::Ledger;
use nonblocking::handlers::presence::Presence;
use nonblocking::handlers::{ClientId, Handler, Outbox, TEST_PEER};
use nonblocking::loadgen::lines::{Balances, ledger_lines};

const LEDGER_LINES: u64 = 10_000;
const PRESENCE_CLIENTS: u64 = 1_000;

fn ledger(c: &mut Criterion) {
    let data = ledger_lines(1, 1, LEDGER_LINES, &mut Balances::new());
    let lines: Vec<&[u8]> = data.split_inclusive(|&b| b == b'\n').collect();
    let mut handler: Box<dyn Handler> = Box::new(Ledger::new(PathBuf::from("unused-log.txt")));
    let mut out = Outbox::new();
    let id = ClientId(1);
    handler.on_connect(id, TEST_PEER, &mut out);
    out.clear();
    let mut group = c.benchmark_group("handlers");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(LEDGER_LINES));
    group.bench_function("ledger_parse_apply_10k_lines", |b| {
        b.iter(|| {
            for line in &lines {
                handler.on_message(id, black_box(line), &mut out);
            }
            out.clear();
        })
    });

    // Presence: 1,000 joined clients; one more joins (a list to 1,001) and
    // leaves (a list to 1,000): 2,001 deliveries per iteration.
    let mut handler: Box<dyn Handler> = Box::new(Presence::new());
    for i in 1..=PRESENCE_CLIENTS {
        handler.on_connect(ClientId(i), TEST_PEER, &mut out);
        handler.on_message(ClientId(i), format!("c{i:05}\n").as_bytes(), &mut out);
        out.clear();
    }
    let mut next = PRESENCE_CLIENTS + 1;
    group.throughput(Throughput::Elements(2 * PRESENCE_CLIENTS + 1));
    group.bench_function("presence_join_leave_at_1000_clients", |b| {
        b.iter(|| {
            let id = ClientId(next);
            next += 1;
            handler.on_connect(id, TEST_PEER, &mut out);
            handler.on_message(id, b"zzlate\n", &mut out);
            black_box(out.actions().len());
            out.clear();
            handler.on_disconnect(id, &mut out);
            black_box(out.actions().len());
            out.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, ledger);
criterion_main!(benches);
