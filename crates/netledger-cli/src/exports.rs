//! The sinks besides the text output and the store, as the flags ask:
//! the Prometheus endpoint and the IPFIX exporter (shared by watch and run).

use anyhow::{Context, Result};
use netledger::{Interval, Sink, Strategy};
use netledger_sinks::export::IpfixSink;
use netledger_sinks::ipfix::ExporterConfig;
use netledger_sinks::metrics::MetricsSink;
use netledger_sinks::prometheus::parse_listen_addr;

use crate::cli::ExportOpts;

/// The export sinks of one command.
pub struct Exports {
    pub metrics: Option<MetricsSink>,
    ipfix: Option<IpfixSink>,
}

impl Exports {
    /// Start what `opts` asks for.
    pub fn start(opts: &ExportOpts, strategy: Strategy) -> Result<Exports> {
        let metrics = match &opts.metrics {
            Some(addr) => {
                let addr = parse_listen_addr(addr)?;
                let m = MetricsSink::start(addr, strategy, opts.metrics_flows)?;
                eprintln!(
                    "netledger: serving Prometheus metrics at http://{}/metrics",
                    m.local_addr()
                );
                Some(m)
            }
            None => None,
        };
        let ipfix = if opts.ipfix.is_empty() {
            None
        } else {
            let config = ExporterConfig {
                collectors: opts.ipfix.clone(),
                observation_domain_id: opts.ipfix_domain,
                mtu: opts.ipfix_mtu,
                template_refresh: opts.ipfix_template_refresh,
                ..Default::default()
            };
            Some(IpfixSink::new(config).context("starting the IPFIX exporter")?)
        };
        Ok(Exports { metrics, ipfix })
    }

    /// Hand `iv` to every export; a failing export is logged, never fatal
    /// (nothing it does can lose what the store or the output has).
    pub fn interval(&mut self, iv: &Interval) {
        self.hand(iv, true);
    }

    /// The same for a cut the metrics' counters already hold (they were
    /// seeded from a store that had it): every export but the metrics.
    pub fn interval_except_metrics(&mut self, iv: &Interval) {
        self.hand(iv, false);
    }

    fn hand(&mut self, iv: &Interval, to_metrics: bool) {
        if let Some(x) = &mut self.ipfix {
            let _ = x.interval(iv);
            for change in x.take_changes() {
                eprintln!("netledger: ipfix: {change}");
            }
            if let Some(m) = &mut self.metrics {
                for (url, n) in x.dropped() {
                    m.export_dropped(&url, n);
                }
            }
        }
        if let Some(m) = self.metrics.as_mut().filter(|_| to_metrics) {
            if let Err(e) = m.interval(iv) {
                eprintln!("netledger: metrics: {e}");
            }
        }
    }

    /// A cut took `d`.
    pub fn cut_took(&mut self, d: std::time::Duration) {
        if let Some(m) = &mut self.metrics {
            m.cut_took(d);
        }
    }
}
