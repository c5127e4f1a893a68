//! What the shared server core promises on both servers, beyond any one
//! handler: broadcasts reach every client in one order however many
//! clients speak at once (the threaded server queues output under the
//! handler lock; the reactor is one thread).

#[macro_use]
mod common;

use std::thread;

use common::*;

every_server!(broadcasts_reach_every_client_in_one_order);

/// Presence: an observer joins first, then 20 clients send their names at
/// once. Lists only grow, so each is distinct: every client must see,
/// from its own first list on, exactly the observer's sequence.
fn broadcasts_reach_every_client_in_one_order(kind: Kind) {
    const JOINERS: u64 = 20;
    let mut s = Server::start(kind, &["-H", "presence"]);
    let mut observer = s.connect_as(1);
    observer.send(b"observer\n");
    observer.expect_line(b"observer\n");
    let conns: Vec<Conn> = (0..JOINERS).map(|i| s.connect_as(i + 2)).collect();
    let joiners: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            thread::spawn(move || {
                c.send(format!("n{i:02}\n").as_bytes());
                let mut seen = Vec::new();
                loop {
                    let line = c.line_string();
                    let done = line.split(' ').count() as u64 == JOINERS + 1;
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
            })
        })
        .collect();
    let mut order = Vec::new();
    while order.len() < JOINERS as usize {
        order.push(observer.line_string());
    }
    for joiner in joiners {
        let seen = joiner.join().expect("a joiner thread");
        let start = order
            .iter()
            .position(|l| *l == seen[0])
            .unwrap_or_else(|| panic!("{:?} never reached the observer", seen[0]));
        assert_eq!(seen, order[start..], "a client saw another order");
    }
    s.stop(SIGINT);
}
