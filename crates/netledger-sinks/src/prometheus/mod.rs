//! Prometheus exposition of netledger's counters.
//!
//! Two halves:
//!
//! * [`expo`] holds a small metrics model ([`Family`], [`Histogram`]) and
//!   renders it in the Prometheus text format 0.0.4 and in OpenMetrics 1.0,
//!   the two formats a Prometheus server can scrape as text.
//! * [`server`] serves the latest published set of families over HTTP at
//!   `/metrics`, choosing the format from the scraper's `Accept` header.
//!
//! The model is deliberately a snapshot, not a registry of live instruments:
//! the caller builds the complete set of families from its own state (the
//! eBPF maps, the cut statistics) and publishes it in one step, so a scrape
//! always sees numbers that belong together.
//!
//! Invalid metric names, label names and values are reported as [`Error`]s
//! when a family is built or a sample is added, not by panicking: names may
//! come from configuration, and a typo there must not bring the process down.

pub mod expo;
pub mod server;

#[cfg(test)]
mod consumer_tests;

use std::io;
use std::net::SocketAddr;

pub use expo::{
    render, validate, Family, Format, Histogram, MetricType, OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
};
pub use server::{parse_listen_addr, MetricsServer};

/// Everything that can go wrong while building, rendering or serving metrics.
///
/// Each message names the cause and what to change, because these errors end
/// up in front of an operator starting the daemon.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A metric family name does not match `[a-zA-Z_][a-zA-Z0-9_]*` or uses
    /// a reserved form.
    #[error(
        "invalid metric name {name:?}: {reason}; use letters, digits and underscores, not starting with a digit"
    )]
    InvalidMetricName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`, is reserved, or
    /// collides with a label the format adds itself (`le` on histograms).
    #[error("invalid label name {label:?} on metric {family}: {reason}")]
    InvalidLabelName {
        /// The family the sample was added to.
        family: String,
        /// The label name as given.
        label: String,
        /// Which rule it breaks.
        reason: &'static str,
    },

    /// One sample names the same label twice.
    #[error(
        "label {label:?} appears twice in one sample of metric {family}; give each label once"
    )]
    DuplicateLabel {
        /// The family the sample was added to.
        family: String,
        /// The repeated label name.
        label: String,
    },

    /// A family was created with an empty help text.
    #[error(
        "metric {family} has no help text; describe what it measures, because Prometheus shows it to users and promtool flags its absence"
    )]
    MissingHelp {
        /// The family's name.
        family: String,
    },

    /// A counter sample is negative or NaN.
    #[error(
        "{value} is not a valid value for counter {family}: a counter counts up from zero, so pass a non-negative number (use a gauge for values that can go down)"
    )]
    InvalidCounterValue {
        /// The family's name.
        family: String,
        /// The rejected value.
        value: f64,
    },

    /// A sample of the wrong shape was added, e.g. a plain number to a
    /// histogram family.
    #[error("metric {family} is a {kind}; add its samples with Family::{method}")]
    WrongSampleKind {
        /// The family's name.
        family: String,
        /// The family's type.
        kind: MetricType,
        /// The method that adds samples to this type.
        method: &'static str,
    },

    /// Histogram bucket bounds that cannot be rendered as a valid histogram.
    #[error("invalid histogram bucket bounds {bounds:?}: {reason}")]
    InvalidBuckets {
        /// The bounds as given.
        bounds: Vec<f64>,
        /// Which rule they break.
        reason: &'static str,
    },

    /// Two samples of one family carry the same label set; Prometheus would
    /// reject the second one at every scrape.
    #[error(
        "metric {family} has two samples with the labels {{{labels}}}; each label set may appear once per metric, so merge them or add a distinguishing label"
    )]
    DuplicateSeries {
        /// The family's name.
        family: String,
        /// The repeated label set, rendered as `name="value",...`.
        labels: String,
    },

    /// Two families in one published set would produce the same series or
    /// family name (e.g. a counter `foo` and a gauge `foo_total`).
    #[error(
        "metrics {first} and {second} both produce the name {name}; rename one of them, because a scraper cannot tell them apart"
    )]
    NameClash {
        /// The family that claimed the name first.
        first: String,
        /// The family that claimed it again.
        second: String,
        /// The contested family or sample name.
        name: String,
    },

    /// The text given for the listen address cannot be used.
    #[error("invalid metrics listen address {input:?}: {reason}")]
    InvalidListenAddress {
        /// The text as given.
        input: String,
        /// What is wrong and what to write instead.
        reason: String,
    },

    /// Another socket already listens on the address.
    #[error("{addr} is in use by another process; pick another --metrics address")]
    AddressInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
    },

    /// The operating system refused the bind, usually for a port below 1024.
    #[error("permission to listen on {addr} was denied; {hint}")]
    PermissionDenied {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What to do about it, depending on the port.
        hint: &'static str,
    },

    /// The IP address is not assigned to any interface of this machine.
    #[error(
        "{addr} is not an address of this machine; use 127.0.0.1 (local scrapers only), 0.0.0.0 (all interfaces) or an address that `ip addr` lists"
    )]
    AddressNotAvailable {
        /// The address that could not be bound.
        addr: SocketAddr,
    },

    /// Any other failure to bind the listening socket.
    #[error("could not listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },

    /// The HTTP layer could not be set up on an already bound socket.
    #[error("could not start the HTTP server on {addr}: {message}")]
    Http {
        /// The bound address.
        addr: SocketAddr,
        /// What the HTTP library reported.
        message: String,
    },

    /// The background thread that answers scrapes could not be started.
    #[error(
        "could not start the metrics server thread: {source}; the system is out of threads or memory"
    )]
    Spawn {
        /// What the operating system reported.
        #[source]
        source: io::Error,
    },
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;
