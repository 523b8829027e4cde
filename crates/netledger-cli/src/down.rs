//! `netledger down`: detach the service's programs, commit the last counts
//! to the store, and remove the pins.

use std::process::ExitCode;

use anyhow::{Context, Result};
use netledger::Service;
use netledger_sinks::store::{Access, LedgerInfo, Store};

pub fn run(ifaces: Vec<String>, db: &std::path::Path) -> Result<ExitCode> {
    netledger::preflight()?;
    let ifaces = if ifaces.is_empty() {
        let all = netledger::pinned_interfaces()?;
        if all.is_empty() {
            anyhow::bail!(
                "netledger is not counting on any interface in this network namespace (no pins under {}/netledger)",
                netledger::BPFFS
            );
        }
        all
    } else {
        ifaces
    };
    // Every interface's pins first: a name with nothing pinned ends the
    // command before the store is opened (or created) or anything detached.
    let services = ifaces
        .into_iter()
        .map(|iface| match Service::open_for_down(&iface) {
            Ok(service) => Ok((iface, service)),
            // The library's advice (start a watch) is no fix for `down`.
            Err(netledger::Error::NotRunning { .. }) => Err(anyhow::anyhow!(
                "nothing to take down on {iface:?}: netledger has no pins for it in this network namespace (`netledger status` lists what is pinned)"
            )),
            Err(e) => Err(e.into()),
        })
        .collect::<Result<Vec<_>>>()?;
    let mut store = Store::open(db, Access::ReadWrite)
        .with_context(|| format!("opening the store {}", db.display()))?;
    for (iface, service) in services {
        let m = service.manifest().clone();
        let detached = service.detach()?;
        let mut summary = Vec::new();
        for leg in detached.legs() {
            let ledger = leg.ledger();
            let id = store.ledger(&LedgerInfo::new(
                &m.instance,
                &iface,
                ledger.direction(),
                &m.config,
            ))?;
            // A cut a killed process left open first, then everything since.
            let last = loop {
                let reopened = ledger.has_open_cut()?;
                let cut = ledger.take_cut()?;
                store.commit(id, &cut.interval).with_context(|| {
                    format!(
                        "committing the last counts of {iface} (it is detached and no longer counting; its pins and counts are kept: fix the store, then `netledger down --iface {iface}` again, or `netledger run` to count again)"
                    )
                })?;
                ledger.finish_cut(&cut)?;
                if !reopened {
                    break cut.interval;
                }
            };
            summary.push(format!(
                "{} cut {} ({} packets)",
                last.dir,
                last.seq,
                last.buckets.get(netledger::Bucket::Seen).packets
            ));
        }
        detached.remove();
        eprintln!(
            "netledger: {iface}: detached; last cuts committed ({}), pins removed",
            summary.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
