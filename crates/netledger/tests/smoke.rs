use netledger::*;

#[test]
fn smoke() {
    let l = Ledger::load(LedgerConfig::default()).unwrap();
    let frame = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(4000, 9000);
    let mut buf = Vec::new();
    frame.write(&mut buf, &[0u8; 22]).unwrap();
    let r = l.test_run(&buf, 1000).unwrap();
    eprintln!("{:?} {}", r.retval, r.duration_ns);
    let s = l.snapshot().unwrap();
    eprintln!("{:#?}", s);
    let e = EmptyProgram::load().unwrap();
    eprintln!("empty {}", e.test_run(&buf, 100000).unwrap().duration_ns);
    eprintln!("nl {}", l.test_run(&buf, 100000).unwrap().duration_ns);
}
