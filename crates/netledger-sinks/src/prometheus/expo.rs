//! The metrics model and its two text renderings.
//!
//! * Prometheus text format 0.0.4, served as [`TEXT_CONTENT_TYPE`]: the
//!   format every scraper understands and the default when none is asked for.
//! * OpenMetrics 1.0, served as [`OPENMETRICS_CONTENT_TYPE`] when the scraper
//!   asks for it (Prometheus does by default).
//!
//! Both renderings of one set of families produce the same series in
//! Prometheus: counters are `<name>_total` and info metrics `<name>_info` in
//! both, and histogram bucket bounds use the OpenMetrics canonical spelling
//! (`1.0`, `0.005`, `1e+06`) in both, so that switching formats does not start
//! new `le` series.
//!
//! Families render in the order given and samples in the order added, so the
//! output is deterministic and diffable. A family without samples renders
//! nothing: metadata without data tells a scraper nothing.

use std::collections::{HashMap, HashSet};
use std::fmt::{self, Write as _};

use super::{Error, Result};

/// `Content-Type` of the Prometheus text format 0.0.4.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// `Content-Type` of OpenMetrics 1.0.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The type of a metric family, which decides how its samples are named and
/// what a scraper may assume about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// A count that only goes up (packets, bytes, drops). Exposed with the
    /// `_total` suffix.
    Counter,
    /// A current value that may go up and down (flows in a table, a timestamp).
    Gauge,
    /// A distribution in fixed buckets, with sum and count (cut durations).
    Histogram,
    /// Constant facts about the process carried as labels (version, strategy).
    /// Exposed as `<name>_info ... 1`; a gauge in the text format, which has
    /// no info type.
    Info,
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Info => "info",
        })
    }
}

/// One of the two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text format.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` header value for a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }

    /// Chooses the format for a request from its `Accept` header(s).
    ///
    /// OpenMetrics is chosen when `application/openmetrics-text` (with no
    /// version or version 1.0.0) is acceptable with a higher quality than any
    /// acceptable text type; equal qualities go to whichever is listed first.
    /// Everything else, including a missing or unparsable header and types
    /// this server cannot produce, gets the text format: every scraper reads
    /// it, and answering 406 would only lose the scrape.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best: Option<(f64, Format)> = None;
        for range in accept.split(',') {
            let Some((format, quality)) = parse_media_range(range) else {
                continue;
            };
            // q=0 means "not acceptable"; strictly greater keeps the first of equals.
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, format));
            }
        }
        best.map_or(Format::Text, |(_, format)| format)
    }
}

/// Reads one media range of an `Accept` header: which of our formats it
/// selects, if any, and its quality.
fn parse_media_range(range: &str) -> Option<(Format, f64)> {
    let mut parts = range.split(';');
    let media_type = parts.next()?.trim().to_ascii_lowercase();
    let mut version = None;
    let mut quality = 1.0;
    for param in parts {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        match key.trim().to_ascii_lowercase().as_str() {
            "q" => {
                quality = value
                    .parse::<f64>()
                    .ok()
                    .filter(|q| (0.0..=1.0).contains(q))?
            }
            "version" => version = Some(value.to_owned()),
            _ => {}
        }
    }
    let format = match media_type.as_str() {
        "application/openmetrics-text" => {
            // Another OpenMetrics version would be a promise this writer cannot keep.
            match version.as_deref() {
                None | Some("1.0.0") => Format::OpenMetrics,
                Some(_) => return None,
            }
        }
        "text/plain" => match version.as_deref() {
            None | Some("0.0.4") => Format::Text,
            Some(_) => return None,
        },
        "application/*" => Format::OpenMetrics,
        "text/*" | "*/*" => Format::Text,
        _ => return None,
    };
    Some((format, quality))
}

/// A histogram with fixed bucket bounds, for non-negative quantities such as
/// durations and sizes.
///
/// Counts are kept per bucket and rendered cumulatively with a final
/// `le="+Inf"` bucket, as both formats require.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    /// One count per bound plus one for values above the last bound.
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Creates an empty histogram with the given upper bucket bounds.
    ///
    /// Bounds must be finite, non-negative and strictly increasing; the
    /// `+Inf` bucket is always added and must not be listed. Negative bounds
    /// are refused because OpenMetrics forbids a sum for such histograms.
    pub fn new(bounds: &[f64]) -> Result<Histogram> {
        let invalid = |reason| Error::InvalidBuckets {
            bounds: bounds.to_vec(),
            reason,
        };
        if bounds.iter().any(|b| b.is_nan()) {
            return Err(invalid("a bound is NaN"));
        }
        if bounds.iter().any(|b| b.is_infinite()) {
            return Err(invalid(
                "a bound is infinite; leave +Inf out, it is always added",
            ));
        }
        if bounds.iter().any(|b| *b < 0.0) {
            return Err(invalid(
                "a bound is negative; this histogram is for non-negative quantities",
            ));
        }
        if bounds.windows(2).any(|w| w[0] >= w[1]) {
            return Err(invalid("bounds must be strictly increasing"));
        }
        Ok(Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        })
    }

    /// Records one observation.
    ///
    /// NaN and negative values are ignored: they belong in no bucket of a
    /// histogram of non-negative quantities and would make the sum invalid.
    pub fn observe(&mut self, value: f64) {
        if value.is_nan() || value < 0.0 {
            return;
        }
        // The first bucket whose bound is >= value; past the end means +Inf.
        let index = self.bounds.partition_point(|bound| *bound < value);
        self.counts[index] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// The upper bounds given at creation (without `+Inf`).
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Number of observations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations recorded.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Cumulative bucket counts, `(upper bound, observations <= bound)`,
    /// ending with `(+Inf, count)`.
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        bounds
            .zip(self.counts.iter())
            .scan(0u64, |running, (bound, n)| {
                *running += n;
                Some((bound, *running))
            })
    }
}

/// The value of one sample: a number, or a whole histogram.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Histogram(Histogram),
}

/// One labelled sample of a family.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    labels: Vec<(String, String)>,
    value: Value,
}

/// A metric family: a name, a help text, a type and its samples.
///
/// The name is the OpenMetrics family name. For counters a trailing `_total`
/// and for info metrics a trailing `_info` is accepted and removed, so
/// `Family::counter("netledger_receive_bytes_total", ..)` and
/// `Family::counter("netledger_receive_bytes", ..)` are the same family; the
/// suffix is put back where each format wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    name: String,
    help: String,
    kind: MetricType,
    samples: Vec<Sample>,
}

impl Family {
    /// A counter family. Sample values must be non-negative.
    pub fn counter(name: &str, help: &str) -> Result<Family> {
        Family::new(name, help, MetricType::Counter)
    }

    /// A gauge family. Any value, including NaN and infinities, is allowed.
    pub fn gauge(name: &str, help: &str) -> Result<Family> {
        Family::new(name, help, MetricType::Gauge)
    }

    /// A histogram family; add samples with [`Family::add_histogram`].
    pub fn histogram(name: &str, help: &str) -> Result<Family> {
        Family::new(name, help, MetricType::Histogram)
    }

    /// An info family; add samples with [`Family::add_info`].
    pub fn info(name: &str, help: &str) -> Result<Family> {
        Family::new(name, help, MetricType::Info)
    }

    fn new(name: &str, help: &str, kind: MetricType) -> Result<Family> {
        let base = match kind {
            MetricType::Counter => name.strip_suffix("_total").unwrap_or(name),
            MetricType::Info => name.strip_suffix("_info").unwrap_or(name),
            MetricType::Gauge | MetricType::Histogram => name,
        };
        check_metric_name(name, base)?;
        if help.trim().is_empty() {
            return Err(Error::MissingHelp {
                family: name.to_owned(),
            });
        }
        Ok(Family {
            name: base.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        })
    }

    /// The family name, without the `_total` or `_info` suffix.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The help text as given.
    pub fn help(&self) -> &str {
        &self.help
    }

    /// The family's type.
    pub fn metric_type(&self) -> MetricType {
        self.kind
    }

    /// Number of samples (label sets) added.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample was added; such a family is not rendered.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a sample to a counter or gauge family.
    pub fn add(&mut self, labels: &[(&str, &str)], value: f64) -> Result<()> {
        match self.kind {
            MetricType::Counter if value.is_nan() || value < 0.0 => {
                return Err(Error::InvalidCounterValue {
                    family: self.name.clone(),
                    value,
                });
            }
            MetricType::Counter | MetricType::Gauge => {}
            MetricType::Histogram | MetricType::Info => return Err(self.wrong_kind()),
        }
        self.push(labels, Value::Number(value))
    }

    /// Adds a sample to a histogram family, copying the histogram's current
    /// counts. The label `le` is reserved for the buckets.
    pub fn add_histogram(&mut self, labels: &[(&str, &str)], histogram: &Histogram) -> Result<()> {
        if self.kind != MetricType::Histogram {
            return Err(self.wrong_kind());
        }
        self.push(labels, Value::Histogram(histogram.clone()))
    }

    /// Adds a sample to an info family; its value is always 1.
    pub fn add_info(&mut self, labels: &[(&str, &str)]) -> Result<()> {
        if self.kind != MetricType::Info {
            return Err(self.wrong_kind());
        }
        self.push(labels, Value::Number(1.0))
    }

    fn wrong_kind(&self) -> Error {
        Error::WrongSampleKind {
            family: self.name.clone(),
            kind: self.kind,
            method: match self.kind {
                MetricType::Counter | MetricType::Gauge => "add",
                MetricType::Histogram => "add_histogram",
                MetricType::Info => "add_info",
            },
        }
    }

    fn push(&mut self, labels: &[(&str, &str)], value: Value) -> Result<()> {
        for (i, (label, _)) in labels.iter().enumerate() {
            self.check_label_name(label)?;
            if labels[..i].iter().any(|(earlier, _)| earlier == label) {
                return Err(Error::DuplicateLabel {
                    family: self.name.clone(),
                    label: (*label).to_owned(),
                });
            }
        }
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples.push(Sample { labels, value });
        Ok(())
    }

    fn check_label_name(&self, label: &str) -> Result<()> {
        let invalid = |reason| Error::InvalidLabelName {
            family: self.name.clone(),
            label: label.to_owned(),
            reason,
        };
        if !is_identifier(label) {
            return Err(invalid(
                "use letters, digits and underscores, not starting with a digit",
            ));
        }
        if label.starts_with("__") {
            return Err(invalid(
                "names starting with \"__\" are reserved for Prometheus itself",
            ));
        }
        if self.kind == MetricType::Histogram && label == "le" {
            return Err(invalid(
                "\"le\" is the bucket bound label that the histogram adds itself",
            ));
        }
        Ok(())
    }

    /// Name of the family in the text format's HELP and TYPE lines, which
    /// is the sample name for counters and info metrics.
    fn text_name(&self) -> String {
        match self.kind {
            MetricType::Counter => format!("{}_total", self.name),
            MetricType::Info => format!("{}_info", self.name),
            MetricType::Gauge | MetricType::Histogram => self.name.clone(),
        }
    }

    /// Every name this family puts on the wire in either format, for
    /// detecting clashes between families (OpenMetrics reserves `_created`
    /// even though it is not rendered here).
    fn claimed_names(&self) -> Vec<String> {
        let suffixes: &[&str] = match self.kind {
            MetricType::Counter => &["", "_total", "_created"],
            MetricType::Gauge => &[""],
            MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
            MetricType::Info => &["", "_info"],
        };
        suffixes
            .iter()
            .map(|suffix| format!("{}{suffix}", self.name))
            .collect()
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the form shared by metric and label names once
/// colons (reserved for recording rules) are excluded.
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Checks a family name; `given` is what the caller wrote, `base` the name
/// after removing a type suffix.
fn check_metric_name(given: &str, base: &str) -> Result<()> {
    let invalid = |reason| Error::InvalidMetricName {
        name: given.to_owned(),
        reason,
    };
    if base.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if base.contains(':') {
        return Err(invalid("colons are reserved for recording rules"));
    }
    if !is_identifier(base) {
        return Err(invalid("it contains a character that is not allowed"));
    }
    if base.starts_with("__") {
        return Err(invalid(
            "names starting with \"__\" are reserved for Prometheus itself",
        ));
    }
    Ok(())
}

/// Checks that a set of families can be exposed together: no two families
/// produce the same family or sample name, and no family has two samples
/// with the same label set (in any order). [`render`] and
/// `MetricsServer::publish` call this; it is public for callers that want to
/// check a set before publishing.
pub fn validate(families: &[Family]) -> Result<()> {
    let mut owners: HashMap<String, &str> = HashMap::new();
    for family in families {
        for name in family.claimed_names() {
            if let Some(first) = owners.insert(name.clone(), &family.name) {
                return Err(Error::NameClash {
                    first: first.to_owned(),
                    second: family.name.clone(),
                    name,
                });
            }
        }
        let mut seen = HashSet::with_capacity(family.samples.len());
        for sample in &family.samples {
            let mut key: Vec<(&str, &str)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            key.sort_unstable();
            if !seen.insert(key) {
                let mut labels = String::new();
                write_label_pairs(&mut labels, &sample.labels, None);
                return Err(Error::DuplicateSeries {
                    family: family.name.clone(),
                    labels,
                });
            }
        }
    }
    Ok(())
}

/// Renders a set of families in the given format after [`validate`]-ing it.
pub fn render(families: &[Family], format: Format) -> Result<String> {
    validate(families)?;
    Ok(render_unchecked(families, format))
}

/// Renders families already known to be valid.
pub(super) fn render_unchecked(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(estimate_size(families));
    for family in families.iter().filter(|f| !f.is_empty()) {
        match format {
            Format::Text => write_text_family(&mut out, family),
            Format::OpenMetrics => write_openmetrics_family(&mut out, family),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

/// A rough output size, so large flow tables render without regrowing.
fn estimate_size(families: &[Family]) -> usize {
    families
        .iter()
        .map(|f| {
            let per_sample = f.name.len() + 24 + f.samples.first().map_or(0, sample_size);
            f.help.len() + 2 * f.name.len() + 32 + per_sample * f.samples.len()
        })
        .sum::<usize>()
        + 8
}

fn sample_size(sample: &Sample) -> usize {
    let labels: usize = sample
        .labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum();
    match &sample.value {
        Value::Number(_) => labels,
        Value::Histogram(h) => (labels + 40) * (h.bounds.len() + 3),
    }
}

fn write_text_family(out: &mut String, family: &Family) {
    let name = family.text_name();
    let wire_type = match family.kind {
        MetricType::Counter => "counter",
        // The text format has no info type; an info metric is a gauge of 1.
        MetricType::Gauge | MetricType::Info => "gauge",
        MetricType::Histogram => "histogram",
    };
    out.push_str("# HELP ");
    out.push_str(&name);
    out.push(' ');
    escape_help_text(out, &family.help);
    out.push_str("\n# TYPE ");
    out.push_str(&name);
    out.push(' ');
    out.push_str(wire_type);
    out.push('\n');
    write_samples(out, family, &name);
}

fn write_openmetrics_family(out: &mut String, family: &Family) {
    // OpenMetrics names the family without suffix and orders TYPE before HELP.
    out.push_str("# TYPE ");
    out.push_str(&family.name);
    out.push(' ');
    out.push_str(&family.kind.to_string());
    out.push_str("\n# HELP ");
    out.push_str(&family.name);
    out.push(' ');
    escape_label_value(out, &family.help);
    out.push('\n');
    write_samples(out, family, &family.text_name());
}

/// Writes the sample lines, which are the same in both formats once the
/// sample name is known.
fn write_samples(out: &mut String, family: &Family, sample_name: &str) {
    for sample in &family.samples {
        match &sample.value {
            Value::Number(v) => write_line(out, sample_name, "", &sample.labels, None, *v),
            Value::Histogram(h) => {
                for (bound, cumulative) in h.cumulative() {
                    let le = format_bucket_bound(bound);
                    write_line(
                        out,
                        sample_name,
                        "_bucket",
                        &sample.labels,
                        Some(("le", &le)),
                        cumulative as f64,
                    );
                }
                write_line(out, sample_name, "_sum", &sample.labels, None, h.sum);
                write_line(
                    out,
                    sample_name,
                    "_count",
                    &sample.labels,
                    None,
                    h.count as f64,
                );
            }
        }
    }
}

fn write_line(
    out: &mut String,
    name: &str,
    suffix: &str,
    labels: &[(String, String)],
    extra: Option<(&str, &str)>,
    value: f64,
) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || extra.is_some() {
        out.push('{');
        write_label_pairs(out, labels, extra);
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

fn write_label_pairs(out: &mut String, labels: &[(String, String)], extra: Option<(&str, &str)>) {
    let pairs = labels.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    for (i, (key, value)) in pairs.chain(extra).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(key);
        out.push_str("=\"");
        escape_label_value(out, value);
        out.push('"');
    }
}

/// Escapes a label value (and an OpenMetrics HELP text): backslash, double
/// quote and line feed.
pub(super) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes a HELP text of the 0.0.4 format: backslash and line feed only; a
/// double quote stays as it is there.
pub(super) fn escape_help_text(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Largest magnitude below which every integer is exactly representable.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53

/// Writes a sample value so that both Prometheus parsers read it back
/// exactly: `NaN`, `+Inf`, `-Inf`; integers without a decimal point (counts
/// are by far the most common values); other numbers in the shortest form
/// that round-trips, with an exponent only for very small or large values.
pub(super) fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0 && value.abs() < EXACT_INTEGER_LIMIT {
        // The range check makes the conversion exact; -0.0 becomes 0.
        let _ = write!(out, "{}", value as i64);
    } else if value.abs() >= 1e-4 && value.abs() < EXACT_INTEGER_LIMIT {
        let _ = write!(out, "{value}");
    } else {
        let _ = write!(out, "{value:e}");
    }
}

/// Formats a bucket bound in the OpenMetrics canonical form (Go's `%g` with
/// `.0` added to integers): `0.005`, `1.0`, `100000.0`, `1e+06`, `1e-05`,
/// `+Inf`. `le` is a label, so its spelling is part of the series identity.
pub(super) fn format_bucket_bound(bound: f64) -> String {
    if bound.is_nan() {
        return "NaN".to_owned();
    }
    if bound.is_infinite() {
        return if bound > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // `{:e}` gives the shortest round-trip digits, e.g. "1.5e-7" or "1e6".
    let scientific = format!("{bound:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let Ok(exponent) = exponent.parse::<i32>() else {
        return scientific;
    };
    if (-4..6).contains(&exponent) || bound == 0.0 {
        let mut fixed = format!("{bound}");
        if !fixed.contains('.') {
            fixed.push_str(".0");
        }
        fixed
    } else {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(families: &[Family]) -> String {
        render(families, Format::Text).expect("valid families")
    }

    fn om(families: &[Family]) -> String {
        render(families, Format::OpenMetrics).expect("valid families")
    }

    fn value(v: f64) -> String {
        let mut s = String::new();
        write_value(&mut s, v);
        s
    }

    #[test]
    fn counter_without_labels() {
        let mut f = Family::counter(
            "netledger_flow_series_dropped_total",
            "Flow series left out.",
        )
        .unwrap();
        f.add(&[], 3.0).unwrap();
        assert_eq!(f.name(), "netledger_flow_series_dropped");
        assert_eq!(
            text(&[f.clone()]),
            "# HELP netledger_flow_series_dropped_total Flow series left out.\n\
             # TYPE netledger_flow_series_dropped_total counter\n\
             netledger_flow_series_dropped_total 3\n"
        );
        assert_eq!(
            om(&[f]),
            "# TYPE netledger_flow_series_dropped counter\n\
             # HELP netledger_flow_series_dropped Flow series left out.\n\
             netledger_flow_series_dropped_total 3\n\
             # EOF\n"
        );
    }

    #[test]
    fn counter_with_labels_keeps_insertion_order() {
        let mut f = Family::counter("netledger_receive_bytes", "Bytes received.").unwrap();
        f.add(&[("interface", "eth0")], 1500.0).unwrap();
        f.add(&[("interface", "eth1")], 0.0).unwrap();
        f.add(&[("interface", "lo")], 12345678901.0).unwrap();
        assert_eq!(
            text(&[f.clone()]),
            "# HELP netledger_receive_bytes_total Bytes received.\n\
             # TYPE netledger_receive_bytes_total counter\n\
             netledger_receive_bytes_total{interface=\"eth0\"} 1500\n\
             netledger_receive_bytes_total{interface=\"eth1\"} 0\n\
             netledger_receive_bytes_total{interface=\"lo\"} 12345678901\n"
        );
        assert_eq!(
            om(&[f]),
            "# TYPE netledger_receive_bytes counter\n\
             # HELP netledger_receive_bytes Bytes received.\n\
             netledger_receive_bytes_total{interface=\"eth0\"} 1500\n\
             netledger_receive_bytes_total{interface=\"eth1\"} 0\n\
             netledger_receive_bytes_total{interface=\"lo\"} 12345678901\n\
             # EOF\n"
        );
    }

    #[test]
    fn gauge_with_several_labels() {
        let mut f = Family::gauge("netledger_flows", "Flows in the table.").unwrap();
        f.add(&[("interface", "eth0"), ("direction", "rx")], 42.0)
            .unwrap();
        f.add(&[("interface", "eth0"), ("direction", "tx")], 0.5)
            .unwrap();
        assert_eq!(
            text(&[f.clone()]),
            "# HELP netledger_flows Flows in the table.\n\
             # TYPE netledger_flows gauge\n\
             netledger_flows{interface=\"eth0\",direction=\"rx\"} 42\n\
             netledger_flows{interface=\"eth0\",direction=\"tx\"} 0.5\n"
        );
        assert_eq!(
            om(&[f]),
            "# TYPE netledger_flows gauge\n\
             # HELP netledger_flows Flows in the table.\n\
             netledger_flows{interface=\"eth0\",direction=\"rx\"} 42\n\
             netledger_flows{interface=\"eth0\",direction=\"tx\"} 0.5\n\
             # EOF\n"
        );
    }

    #[test]
    fn histogram_is_cumulative_with_inf_sum_and_count() {
        let mut h = Histogram::new(&[0.001, 0.01, 0.1, 1.0]).unwrap();
        for v in [0.0005, 0.001, 0.002, 0.05, 0.05, 3.0] {
            h.observe(v);
        }
        let mut f = Family::histogram("netledger_cut_duration_seconds", "Time to cut.").unwrap();
        f.add_histogram(&[], &h).unwrap();
        let body = "netledger_cut_duration_seconds_bucket{le=\"0.001\"} 2\n\
                    netledger_cut_duration_seconds_bucket{le=\"0.01\"} 3\n\
                    netledger_cut_duration_seconds_bucket{le=\"0.1\"} 5\n\
                    netledger_cut_duration_seconds_bucket{le=\"1.0\"} 5\n\
                    netledger_cut_duration_seconds_bucket{le=\"+Inf\"} 6\n\
                    netledger_cut_duration_seconds_sum 3.1035\n\
                    netledger_cut_duration_seconds_count 6\n";
        assert_eq!(
            text(&[f.clone()]),
            format!(
                "# HELP netledger_cut_duration_seconds Time to cut.\n\
                 # TYPE netledger_cut_duration_seconds histogram\n{body}"
            )
        );
        assert_eq!(
            om(&[f]),
            format!(
                "# TYPE netledger_cut_duration_seconds histogram\n\
                 # HELP netledger_cut_duration_seconds Time to cut.\n{body}# EOF\n"
            )
        );
    }

    #[test]
    fn histogram_labels_come_before_le() {
        let mut h = Histogram::new(&[10.0]).unwrap();
        h.observe(10.0);
        let mut f = Family::histogram("x_size_bytes", "Sizes.").unwrap();
        f.add_histogram(&[("sink", "a")], &h).unwrap();
        assert!(text(&[f]).contains(
            "x_size_bytes_bucket{sink=\"a\",le=\"10.0\"} 1\n\
             x_size_bytes_bucket{sink=\"a\",le=\"+Inf\"} 1\n\
             x_size_bytes_sum{sink=\"a\"} 10\n\
             x_size_bytes_count{sink=\"a\"} 1\n"
        ));
    }

    #[test]
    fn histogram_ignores_nan_and_negative_and_checks_bounds() {
        let mut h = Histogram::new(&[]).unwrap();
        h.observe(f64::NAN);
        h.observe(-1.0);
        h.observe(f64::INFINITY);
        assert_eq!(h.count(), 1);
        assert_eq!(h.cumulative().collect::<Vec<_>>(), [(f64::INFINITY, 1)]);
        for bad in [
            &[1.0, 1.0][..],
            &[2.0, 1.0],
            &[f64::NAN],
            &[1.0, f64::INFINITY],
            &[-1.0],
        ] {
            assert!(
                matches!(Histogram::new(bad), Err(Error::InvalidBuckets { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn info_is_a_gauge_in_text_and_info_in_openmetrics() {
        let mut f = Family::info("netledger_build_info", "Build of this netledger.").unwrap();
        f.add_info(&[("version", "0.1.0"), ("strategy", "swap")])
            .unwrap();
        assert_eq!(f.name(), "netledger_build");
        assert_eq!(
            text(&[f.clone()]),
            "# HELP netledger_build_info Build of this netledger.\n\
             # TYPE netledger_build_info gauge\n\
             netledger_build_info{version=\"0.1.0\",strategy=\"swap\"} 1\n"
        );
        assert_eq!(
            om(&[f]),
            "# TYPE netledger_build info\n\
             # HELP netledger_build Build of this netledger.\n\
             netledger_build_info{version=\"0.1.0\",strategy=\"swap\"} 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn escaping_of_label_values_and_help() {
        let mut f = Family::gauge("x", "a \\ back\nslash \"quoted\"").unwrap();
        f.add(&[("path", "C:\\dir\n\"q\"")], 1.0).unwrap();
        assert_eq!(
            text(&[f.clone()]),
            "# HELP x a \\\\ back\\nslash \"quoted\"\n\
             # TYPE x gauge\n\
             x{path=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n"
        );
        assert_eq!(
            om(&[f]),
            "# TYPE x gauge\n\
             # HELP x a \\\\ back\\nslash \\\"quoted\\\"\n\
             x{path=\"C:\\\\dir\\n\\\"q\\\"\"} 1\n\
             # EOF\n"
        );
    }

    #[test]
    fn unicode_label_values_pass_through() {
        let mut f = Family::gauge("x", "h").unwrap();
        f.add(&[("name", "wlan-café ✓")], 1.0).unwrap();
        assert!(text(&[f]).contains("x{name=\"wlan-café ✓\"} 1\n"));
    }

    #[test]
    fn float_formatting() {
        assert_eq!(value(0.0), "0");
        assert_eq!(value(-0.0), "0");
        assert_eq!(value(1.0), "1");
        assert_eq!(value(-7.0), "-7");
        assert_eq!(value(1234567890123.0), "1234567890123");
        assert_eq!(value(9007199254740991.0), "9007199254740991");
        assert_eq!(value(9007199254740992.0), "9.007199254740992e15");
        assert_eq!(value(1e300), "1e300");
        assert_eq!(value(0.1), "0.1");
        assert_eq!(value(-2.5), "-2.5");
        assert_eq!(value(1700000000.123), "1700000000.123");
        assert_eq!(value(0.0001), "0.0001");
        assert_eq!(value(0.00001234), "1.234e-5");
        assert_eq!(value(f64::MIN_POSITIVE), "2.2250738585072014e-308");
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
        // Every rendering reads back as the same number.
        for v in [0.1, 1e-7, 123.456, 1e22, 5e-324, f64::MAX, 2.0f64.powi(60)] {
            assert_eq!(value(v).parse::<f64>().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn bucket_bounds_use_the_canonical_form() {
        let cases = [
            (0.0, "0.0"),
            (0.001, "0.001"),
            (0.002, "0.002"),
            (0.01, "0.01"),
            (0.1, "0.1"),
            (0.9, "0.9"),
            (0.95, "0.95"),
            (0.99, "0.99"),
            (0.999, "0.999"),
            (1.0, "1.0"),
            (1.7, "1.7"),
            (10.0, "10.0"),
            (1e-10, "1e-10"),
            (1e-9, "1e-09"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (100000.0, "100000.0"),
            (1e6, "1e+06"),
            (1.5e6, "1.5e+06"),
            (1e10, "1e+10"),
            (1e100, "1e+100"),
            (f64::INFINITY, "+Inf"),
        ];
        for (bound, expected) in cases {
            assert_eq!(format_bucket_bound(bound), expected, "{bound}");
        }
    }

    #[test]
    fn families_and_samples_keep_order_and_empty_families_are_left_out() {
        let mut b = Family::gauge("b", "second").unwrap();
        b.add(&[("k", "2")], 2.0).unwrap();
        b.add(&[("k", "1")], 1.0).unwrap();
        let empty = Family::counter("c", "nothing yet").unwrap();
        let mut a = Family::gauge("a", "first").unwrap();
        a.add(&[], 0.0).unwrap();
        assert_eq!(
            text(&[b, empty, a]),
            "# HELP b second\n# TYPE b gauge\nb{k=\"2\"} 2\nb{k=\"1\"} 1\n\
             # HELP a first\n# TYPE a gauge\na 0\n"
        );
        assert_eq!(text(&[]), "");
        assert_eq!(om(&[]), "# EOF\n");
    }

    #[test]
    fn invalid_metric_names_are_errors() {
        for bad in [
            "",
            "_total",
            "9lives",
            "has-dash",
            "has space",
            "récolte",
            "job:rate5m",
            "__internal",
        ] {
            let err = Family::counter(bad, "help").unwrap_err();
            assert!(
                matches!(err, Error::InvalidMetricName { .. }),
                "{bad:?}: {err}"
            );
        }
        let err = Family::gauge("a-b", "h").unwrap_err();
        assert!(err.to_string().contains("\"a-b\""), "{err}");
        assert!(Family::gauge("_private_ok", "h").is_ok());
        assert!(matches!(
            Family::gauge("x", " ").unwrap_err(),
            Error::MissingHelp { .. }
        ));
    }

    #[test]
    fn invalid_label_names_are_errors() {
        let mut f = Family::gauge("x", "h").unwrap();
        for bad in ["", "1a", "a-b", "a:b", "__name__", "ünï"] {
            assert!(
                matches!(
                    f.add(&[(bad, "v")], 1.0),
                    Err(Error::InvalidLabelName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            f.add(&[("a", "1"), ("a", "2")], 1.0),
            Err(Error::DuplicateLabel { .. })
        ));
        let mut h = Family::histogram("y", "h").unwrap();
        let hist = Histogram::new(&[1.0]).unwrap();
        assert!(matches!(
            h.add_histogram(&[("le", "1")], &hist),
            Err(Error::InvalidLabelName { .. })
        ));
        assert!(f.is_empty(), "a rejected sample is not added");
    }

    #[test]
    fn wrong_values_and_kinds_are_errors() {
        let mut c = Family::counter("c", "h").unwrap();
        assert!(matches!(
            c.add(&[], -1.0),
            Err(Error::InvalidCounterValue { .. })
        ));
        assert!(matches!(
            c.add(&[], f64::NAN),
            Err(Error::InvalidCounterValue { .. })
        ));
        assert!(c.add(&[], f64::INFINITY).is_ok());
        let err = c.add_info(&[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "metric c is a counter; add its samples with Family::add"
        );
        let mut h = Family::histogram("h", "h").unwrap();
        assert!(matches!(
            h.add(&[], 1.0),
            Err(Error::WrongSampleKind { .. })
        ));
        let mut g = Family::gauge("g", "h").unwrap();
        assert!(g.add(&[], f64::NAN).is_ok() && g.add(&[("a", "b")], -1.0).is_ok());
    }

    #[test]
    fn clashing_families_and_duplicate_series_are_refused() {
        let counter = Family::counter("foo", "h").unwrap();
        let gauge = Family::gauge("foo_total", "h").unwrap();
        let err = render(&[counter.clone(), gauge], Format::Text).unwrap_err();
        assert!(
            matches!(&err, Error::NameClash { name, .. } if name == "foo_total"),
            "{err}"
        );
        let same = Family::gauge("foo", "h").unwrap();
        assert!(matches!(
            validate(&[counter, same]),
            Err(Error::NameClash { .. })
        ));
        let hist = Family::histogram("bar", "h").unwrap();
        let count = Family::gauge("bar_count", "h").unwrap();
        assert!(matches!(
            validate(&[hist, count]),
            Err(Error::NameClash { .. })
        ));

        let mut dup = Family::gauge("d", "h").unwrap();
        dup.add(&[("a", "1"), ("b", "2")], 1.0).unwrap();
        dup.add(&[("b", "2"), ("a", "1")], 2.0).unwrap();
        let err = validate(&[dup]).unwrap_err();
        assert!(
            err.to_string().contains("{b=\"2\",a=\"1\"}"),
            "the message shows the labels: {err}"
        );
    }

    #[test]
    fn negotiation_defaults_to_text() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("")), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Text);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
        assert_eq!(Format::negotiate(Some("garbage;;;,,=")), Format::Text);
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited"
            )),
            Format::Text
        );
    }

    #[test]
    fn negotiation_picks_openmetrics_when_asked() {
        let om = Format::OpenMetrics;
        assert_eq!(Format::negotiate(Some("application/openmetrics-text")), om);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            om
        );
        assert_eq!(
            Format::negotiate(Some("Application/OpenMetrics-Text;Version=\"1.0.0\"")),
            om
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )),
            om
        );
        // q-values decide, wherever the types are listed.
        assert_eq!(
            Format::negotiate(Some(
                "text/plain;version=0.0.4;q=0.3, application/openmetrics-text;q=0.9"
            )),
            om
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.2, text/plain;q=0.8")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/html, application/openmetrics-text;q=0.5")),
            om
        );
        // Ties go to the first listed.
        assert_eq!(
            Format::negotiate(Some("text/plain, application/openmetrics-text")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text, text/plain")),
            om
        );
    }

    #[test]
    fn negotiation_respects_refusals_and_versions() {
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0, */*;q=0.1")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;version=2.0.0")),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0, application/openmetrics-text;q=0.1")),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=abc")),
            Format::Text
        );
    }
}
