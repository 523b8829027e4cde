//! Helpers the kernel tests share: running one at a time, the CPUs writers
//! are pinned to, and the addresses and frames of crafted traffic. (Each
//! test binary compiles its own copy and uses part of it.)
#![allow(dead_code)]

use std::sync::{Mutex, MutexGuard};

pub mod frames;

use etherparse::{ArpHardwareId, ArpOperation, ArpPacket, EtherType, PacketBuilder};

/// Tests of one binary that pin threads or time cuts take this lock, so that
/// they never overlap (cargo runs the tests of a binary in parallel).
static SERIAL: Mutex<()> = Mutex::new(());

/// Hold the binary's test lock until the guard drops.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CPUs this process may run on.
pub fn allowed_cpus() -> Vec<usize> {
    netledger_lab::harness::allowed_cpus().expect("sched_getaffinity")
}

/// Pin the calling thread to `cpu`.
#[track_caller]
pub fn pin_to(cpu: usize) {
    netledger_lab::harness::pin_to(cpu)
        .unwrap_or_else(|e| panic!("sched_setaffinity(cpu {cpu}): {e}"));
}

/// The first two CPUs this process may use, or every CPU it may use if
/// there are fewer.
pub fn two_cpus() -> Result<[usize; 2], Vec<usize>> {
    let cpus = allowed_cpus();
    match cpus[..] {
        [a, b, ..] => Ok([a, b]),
        _ => Err(cpus),
    }
}

/// Two CPUs to pin the writers to; fails the test on a machine with one
/// (a reader can never overlap a writer there).
#[track_caller]
pub fn two_writer_cpus() -> [usize; 2] {
    two_cpus().unwrap_or_else(|cpus| panic!("needs at least two CPUs, has {cpus:?}"))
}

/// The Ethernet addresses of crafted frames.
pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const A4: [u8; 4] = [10, 1, 2, 3];
pub const B4: [u8; 4] = [192, 168, 7, 9];
/// 2001:db8:1:2::a
pub const A6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x0a,
];
/// 2001:db8:ffff::b
pub const B6: [u8; 16] = [
    0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0b,
];

/// An ARP request for B4 from A4: not IP.
pub fn arp() -> Vec<u8> {
    let packet = ArpPacket::new(
        ArpHardwareId::ETHERNET,
        EtherType::IPV4,
        ArpOperation::REQUEST,
        &MAC_SRC,
        &A4,
        &[0; 6],
        &B4,
    )
    .expect("a valid ARP packet");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .arp(packet)
        .write(&mut out)
        .expect("etherparse writes the frame");
    out
}
