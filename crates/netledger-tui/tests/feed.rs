//! The feed side of the loop: the channel feed, and the refusal to run
//! without a terminal.

mod common;

use std::io::IsTerminal;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use netledger_tui::{Error, Feed, FeedError, Next};

#[test]
fn a_channel_is_a_feed_that_ends_when_the_sender_goes() {
    let (tx, mut rx) = mpsc::channel();
    tx.send(second(1)).expect("send");
    match rx.next(Duration::from_millis(10)) {
        Ok(Next::Interval(iv)) => assert_eq!(iv.seq, 1),
        other => panic!("{other:?}"),
    }
    let t = Instant::now();
    assert!(matches!(rx.next(Duration::from_millis(50)), Ok(Next::Idle)));
    assert!(t.elapsed() >= Duration::from_millis(50));
    drop(tx);
    assert!(matches!(
        rx.next(Duration::from_millis(10)),
        Ok(Next::End(_))
    ));
}

#[test]
fn feed_errors_carry_their_cause() {
    let e: FeedError = std::io::Error::other("socket closed").into();
    assert_eq!(e.to_string(), "socket closed");
    assert_eq!(
        Error::Feed(FeedError::msg("bad record")).to_string(),
        "reading intervals: bad record"
    );
}

#[test]
fn without_a_terminal_the_error_points_to_watch() {
    if std::io::stdout().is_terminal() {
        // Run by hand in a terminal: nothing to check here.
        return;
    }
    let (_tx, rx) = mpsc::channel();
    match netledger_tui::run(header(), rx) {
        Err(e @ Error::NotATerminal) => {
            let msg = e.to_string();
            assert!(msg.contains("netledger watch"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    // Nothing was changed in the terminal.
    assert!(!netledger_tui::term::is_changed());
}
