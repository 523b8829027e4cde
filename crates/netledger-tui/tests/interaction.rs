//! The interaction state machine through keys, without a terminal: sorts
//! and their reversal, the stable order, the filter, pause, quitting.

mod common;

use common::*;
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use netledger::{Direction, FlowKey};
use netledger_tui::{Exit, Reaction, SortBy, Top};

/// The rows by their place in the main fixture after `fed(12)` and `s`.
fn sorted() -> Top {
    let mut top = fed(12);
    press(&mut top, "s");
    top
}

#[test]
fn rate_is_the_default_sort_highest_first() {
    let top = sorted();
    assert_eq!(top.view().sort().by, SortBy::Rate);
    assert!(!top.view().sort().reversed);
    assert_eq!(
        order(&top),
        vec![v6_long(), udp(), fragment(), gre(), ping6(), ping(), web()]
    );
    let rates: Vec<f64> = top.view().rows().map(|r| r.last.bits).collect();
    assert!(rates.windows(2).all(|w| w[0] >= w[1]), "{rates:?}");
}

#[test]
fn each_sort_key_and_its_reversal() {
    let mut top = sorted();
    type Value = fn(&netledger_tui::Row) -> u64;
    let cases: [(char, Value); 2] = [('b', |r| r.total.bytes), ('p', |r| r.total.packets)];
    for (k, value) in cases {
        assert_eq!(press(&mut top, &k.to_string()), vec![Reaction::Redraw]);
        let v: Vec<u64> = top.view().rows().map(value).collect();
        assert!(v.windows(2).all(|w| w[0] >= w[1]), "{k}: {v:?}");
        assert!(!top.view().sort().reversed);
        press(&mut top, &k.to_string());
        assert!(top.view().sort().reversed, "{k} again reverses");
        let v: Vec<u64> = top.view().rows().map(value).collect();
        assert!(v.windows(2).all(|w| w[0] <= w[1]), "{k} reversed: {v:?}");
        press(&mut top, &k.to_string());
        assert!(!top.view().sort().reversed, "{k} a third time restores");
    }
    assert_eq!(
        order(&top)[..3],
        [udp(), v6_long(), web()],
        "by packets: 12,000, 7,800, 2,000"
    );

    press(&mut top, "k");
    let keys = order(&top);
    let mut want = keys.clone();
    want.sort();
    assert_eq!(keys, want, "keys ascending");
    assert_eq!(keys[0], udp(), "10.0.0.1 first");
    assert!(screen(&mut top, 80, 24)
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("KEY▲")));
    press(&mut top, "k");
    want.reverse();
    assert_eq!(order(&top), want, "keys descending");
    assert!(screen(&mut top, 80, 24)
        .lines()
        .nth(1)
        .is_some_and(|l| l.starts_with("KEY▼")));

    press(&mut top, "r");
    assert_eq!(top.view().sort().by, SortBy::Rate);
    assert!(
        !top.view().sort().reversed,
        "a new column starts in its natural direction"
    );
    press(&mut top, "r");
    assert_eq!(
        order(&top).last(),
        Some(&v6_long()),
        "reversed: highest last"
    );
    assert!(screen(&mut top, 80, 24).contains("BIT/S▲"));
}

#[test]
fn refreshes_with_the_same_rows_keep_every_row_in_place() {
    let mut top = sorted();
    let before = order(&top);
    // Seconds 13 and 14 change every number, not the set of keys (second
    // 15 would bring the fragment burst, which is still in the window).
    for n in 13..=14 {
        top.interval(second(n));
        assert_eq!(order(&top), before, "second {n}");
    }
    // The fragment burst of second 12 is over: its row is held above rows
    // that now have a higher rate, and the screen says so.
    assert!(top.view().held());
    assert!(screen(&mut top, 80, 24).contains("order held, s sorts"));
    // The udp flow jumps above the v6 flow: it stays where it was.
    let mut iv = second(15);
    for (k, c) in &mut iv.flows {
        if *k == udp() {
            c.bytes *= 10;
        }
    }
    top.interval(iv);
    assert_eq!(order(&top), before);
    // `s` sorts again, same column, same direction.
    press(&mut top, "s");
    assert_eq!(order(&top)[0], udp());
    assert!(!top.view().held());
    assert!(!top.view().sort().reversed);
}

#[test]
fn a_new_row_sorts_the_rows_again_and_ties_keep_their_order() {
    let mut top = Top::new(header(), t0());
    let a = ports("10.0.0.1", 1, "10.0.0.9", 80, 6);
    let b = ports("10.0.0.2", 1, "10.0.0.9", 80, 6);
    let c = ports("10.0.0.3", 1, "10.0.0.9", 80, 6);
    let d = ports("10.0.0.4", 1, "10.0.0.9", 80, 6);
    let feed = |top: &mut Top, n: u64, flows: Vec<(FlowKey, u64)>| {
        let flows = flows.into_iter().map(|(k, b)| (k, count(1, b))).collect();
        top.interval(interval(
            "eth0",
            Direction::In,
            n,
            (n - 1) * 1000,
            n * 1000,
            flows,
            count(0, 0),
        ));
    };
    // Equal rates: ties by key the first time.
    feed(&mut top, 1, vec![(c, 100), (a, 100), (b, 100)]);
    assert_eq!(order(&top), vec![a, b, c]);
    // c overtakes: held, same rows.
    feed(&mut top, 2, vec![(c, 300), (a, 100), (b, 100)]);
    assert_eq!(order(&top), vec![a, b, c]);
    // A new key: everything is sorted again; a and b tie and keep their
    // previous order.
    feed(&mut top, 3, vec![(c, 300), (b, 100), (a, 100), (d, 200)]);
    assert_eq!(order(&top), vec![c, d, a, b]);
    // Now b and a swap places by key sort, then by rate again: a tie keeps
    // the order it had (k reversed put b before a).
    press(&mut top, "kk");
    assert_eq!(order(&top), vec![d, c, b, a]);
    press(&mut top, "r");
    assert_eq!(order(&top), vec![c, d, b, a]);
}

#[test]
fn filter_matches_address_port_and_protocol() {
    let cases: [(&str, Vec<FlowKey>); 9] = [
        ("10.0.42", vec![ping()]),
        ("2001:db8:aaaa", vec![v6_long()]),
        ("FD00::", vec![ping6()]),
        ("443", vec![v6_long(), web()]),
        (":9000", vec![udp()]),
        ("icmp", vec![ping6(), ping()]),
        ("47", vec![gre()]),
        ("17", vec![udp(), fragment()]),
        ("fragment", vec![fragment()]),
    ];
    for (text, want) in cases {
        let mut top = sorted();
        press(&mut top, &format!("/{text}"));
        assert_eq!(top.view().draft(), Some(text));
        assert_eq!(order(&top).len(), 7, "not applied before Enter");
        assert_eq!(top.key(code(KeyCode::Enter)), Reaction::Redraw);
        assert_eq!(top.view().filter(), text);
        let mut got = order(&top);
        let mut want = want.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "filter {text:?}");
    }
}

#[test]
fn esc_cancels_the_prompt_and_then_clears_the_filter() {
    let mut top = sorted();
    press(&mut top, "/443");
    top.key(code(KeyCode::Enter));
    assert_eq!(order(&top).len(), 2);
    // Editing starts from the filter applied; Esc leaves it as it was.
    press(&mut top, "/");
    assert_eq!(top.view().draft(), Some("443"));
    top.key(code(KeyCode::Backspace));
    top.key(code(KeyCode::Backspace));
    top.key(code(KeyCode::Backspace));
    press(&mut top, "icmp");
    assert_eq!(top.key(code(KeyCode::Esc)), Reaction::Redraw);
    assert_eq!(top.view().draft(), None);
    assert_eq!(top.view().filter(), "443");
    assert_eq!(order(&top).len(), 2);
    // Keys typed in the prompt are text, not commands.
    press(&mut top, "/q r");
    assert_eq!(top.view().draft(), Some("443q r"));
    top.key(code(KeyCode::Esc));
    // Esc outside the prompt clears the filter.
    top.key(code(KeyCode::Esc));
    assert_eq!(top.view().filter(), "");
    assert_eq!(order(&top).len(), 7);
    // A filter that matches nothing says so.
    press(&mut top, "/nothing");
    top.key(code(KeyCode::Enter));
    assert!(
        screen(&mut top, 80, 24).contains("no flow matches \"nothing\" (Esc clears the filter)")
    );
}

#[test]
fn pause_freezes_the_view_while_the_model_counts_on() {
    let mut top = sorted();
    let rows_before: Vec<_> = top.view().rows().cloned().collect();
    let sheet_before = top.view().sheet().clone();
    assert_eq!(press(&mut top, " "), vec![Reaction::Redraw]);
    assert!(top.view().paused());
    for n in 13..=20 {
        top.interval(second(n));
    }
    assert_eq!(
        top.model().intervals(),
        20,
        "the model keeps every interval"
    );
    assert_eq!(top.view().pending(), 8);
    let rows_paused: Vec<_> = top.view().rows().cloned().collect();
    assert_eq!(rows_paused, rows_before, "frozen");
    assert_eq!(top.view().sheet(), &sheet_before);
    // Sorting works on the frozen rows.
    press(&mut top, "b");
    assert_eq!(order(&top)[0], udp());
    assert_eq!(top.view().sheet(), &sheet_before);

    press(&mut top, " ");
    assert!(!top.view().paused());
    assert_eq!(top.view().pending(), 0);
    let udp_row = top
        .view()
        .rows()
        .find(|r| r.key == udp())
        .cloned()
        .expect("udp row");
    assert_eq!(udp_row.total.packets, 20 * 1000, "the totals jump");
    assert_eq!(top.view().sheet().intervals, 20);
    // The web flow stopped after second 5 but is within 40 s: still shown.
    assert!(order(&top).contains(&web()));
}

#[test]
fn q_and_ctrl_c_leave_key_releases_do_nothing() {
    let mut top = sorted();
    assert_eq!(top.key(key('q')), Reaction::Exit(Exit::Quit));
    assert_eq!(top.key(key('Q')), Reaction::Exit(Exit::Quit));
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(top.key(ctrl_c), Reaction::Exit(Exit::Interrupt));
    // Ctrl-C leaves from the prompt too; q there is text.
    press(&mut top, "/");
    assert_eq!(top.key(key('q')), Reaction::Redraw);
    assert_eq!(top.key(ctrl_c), Reaction::Exit(Exit::Interrupt));
    let mut release = key('r');
    release.kind = KeyEventKind::Release;
    top.key(code(KeyCode::Esc));
    assert_eq!(top.key(release), Reaction::Ignored);
    assert_eq!(top.key(key('x')), Reaction::Ignored);
    assert_eq!(top.key(code(KeyCode::F(5))), Reaction::Ignored);
}

#[test]
fn the_feed_end_is_shown_and_the_figures_stay() {
    let mut top = sorted();
    top.end("netledger run stopped");
    let s = screen(&mut top, 80, 24);
    assert!(
        s.lines()
            .next()
            .is_some_and(|l| l.contains("ENDED: netledger run stopped")),
        "{s}"
    );
    assert_eq!(order(&top).len(), 7);
}
