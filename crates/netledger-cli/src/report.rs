//! `netledger report`: history from the store, read only.

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, Result};
use netledger::Direction;
use netledger_sinks::store::report::{write_report, By, ReportQuery};
use netledger_sinks::store::{parse_time, Access, Store, Zone};

use crate::cli::{ByArg, DirFilter, ReportArgs};

pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let store = Store::open(&args.db, Access::ReadOnly)
        .with_context(|| format!("opening the store {}", args.db.display()))?;
    let now = SystemTime::now();
    let zone = if args.utc { Zone::Utc } else { Zone::Local };
    let time = |s: &Option<String>| -> Result<Option<SystemTime>> {
        s.as_deref()
            .map(|s| parse_time(s, now, &zone))
            .transpose()
            .map_err(Into::into)
    };
    let mut q = ReportQuery::new(now);
    q.iface = args.iface.clone();
    q.dir = args.dir.map(|d| match d {
        DirFilter::In => Direction::In,
        DirFilter::Out => Direction::Out,
    });
    q.since = time(&args.since)?;
    q.until = time(&args.until)?;
    q.by = match args.by {
        ByArg::Flow => By::Flow,
        ByArg::Src => By::Src,
        ByArg::Dst => By::Dst,
        ByArg::Hour => By::Hour,
        ByArg::Day => By::Day,
        ByArg::Month => By::Month,
    };
    q.top = args.top;
    q.format = args.format.into();
    q.zone = zone;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    match write_report(&store, &q, &mut out) {
        Ok(_) => {}
        Err(e) if e.is_broken_pipe() => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(e.into()),
    }
    out.flush().ok();
    Ok(ExitCode::SUCCESS)
}
