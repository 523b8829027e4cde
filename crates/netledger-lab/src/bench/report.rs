//! `netledger bench`: every way of counting, measured side by side in one
//! run on this machine, with the targets checked and a plot drawn. The
//! command line parses its flags into a [`BenchCli`] and calls [`run`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::bench::{self, Measurement, Options};

/// What `netledger bench` was asked for.
#[derive(Debug, Clone, Default)]
pub struct BenchCli {
    /// Tiny sizes and one round: checks that every part runs, in seconds.
    pub quick: bool,
    /// Rounds per figure (medians are over these; default 5, 1 with `quick`).
    pub rounds: Option<usize>,
    /// Also write every figure and target as JSON here.
    pub json: Option<PathBuf>,
    /// Draw ns/packet per strategy against the number of keys here (SVG).
    pub plot: Option<PathBuf>,
    /// Only these parts, comma-separated: datapath, exactness, drain, reader, real.
    pub only: Option<String>,
}

/// A part of the benchmark: its figures, or why it could not take them.
pub type Part = fn(&Options<'_>) -> Result<Vec<Measurement>>;

/// Every part, in the order they run: (key for `only`, title, part).
pub const PARTS: [(&str, &str, Part); 5] = [
    (
        "datapath",
        "1. Data-path cost (test_run, ns/packet)",
        bench::datapath,
    ),
    ("exactness", "2. Read-side exactness", bench::exactness),
    ("drain", "3. Snapshot and drain throughput", bench::drain),
    (
        "reader",
        "4. Data-path slowdown from a concurrent reader",
        bench::reader_slowdown,
    ),
    (
        "real",
        "5. Real packets through a veth pair",
        bench::real_packets,
    ),
];

/// A target of the benchmark: a measured figure and the bound it must meet.
#[derive(Debug, Serialize)]
pub struct Target {
    /// The figure, in words.
    pub what: &'static str,
    /// Its value in this run (None: not measured).
    pub value: Option<f64>,
    /// The bound, e.g. "<= 1.1".
    pub bound: String,
    /// Whether the value meets the bound (None: not measured).
    pub pass: Option<bool>,
}

#[derive(Serialize)]
struct Machine {
    kernel: String,
    cpu: String,
    cpus: usize,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    command: String,
    machine: Machine,
    measurements: &'a [Measurement],
    targets: &'a [Target],
}

fn machine() -> Machine {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Machine { kernel, cpu, cpus }
}

/// The first measurement matching every predicate.
fn find<'a>(
    ms: &'a [Measurement],
    section: &str,
    unit: &str,
    name_has: &[&str],
) -> Option<&'a Measurement> {
    ms.iter().find(|m| {
        m.section == section
            && m.unit == unit
            && name_has
                .iter()
                .all(|n| m.name.to_lowercase().contains(&n.to_lowercase()))
    })
}

/// ns/packet of `program` in the simplest scenario (1 writer, 1 key, same key).
fn datapath_ns(ms: &[Measurement], program: &str) -> Option<f64> {
    ms.iter()
        .find(|m| {
            m.section == "datapath"
                && m.unit == "ns/packet"
                && m.tag("program") == Some(program)
                && m.tag("writers") == Some("1")
                && m.tag("keys") == Some("1")
                && m.tag("same_key").is_none_or(|s| s == "true")
        })
        .map(|m| m.value)
}

/// (program - empty) / (reference - empty): overhead over the empty program, relative.
fn overhead_ratio(ms: &[Measurement], program: &str, reference: &str) -> Option<f64> {
    let empty = datapath_ns(ms, "empty")?;
    let p = datapath_ns(ms, program)?;
    let r = datapath_ns(ms, reference)?;
    Some((p - empty) / (r - empty))
}

/// The targets of the benchmark, from the measurements of this run.
pub fn targets(ms: &[Measurement]) -> Vec<Target> {
    let at_most = |what, value: Option<f64>, bound: f64| Target {
        what,
        value,
        bound: format!("<= {bound}"),
        pass: value.map(|v| v <= bound),
    };
    let at_least = |what, value: Option<f64>, bound: f64| Target {
        what,
        value,
        bound: format!(">= {bound}"),
        pass: value.map(|v| v >= bound),
    };
    let v = |m: Option<&Measurement>| m.map(|m| m.value);
    vec![
        at_most(
            "swap overhead / per-CPU hash overhead (ns over empty, 1 writer, 1 key)",
            overhead_ratio(ms, "swap", "percpu"),
            1.1,
        ),
        at_most(
            "lock overhead / bare single-key spin-lock counter overhead (no parsing)",
            overhead_ratio(ms, "lock", "bare_lock"),
            1.2,
        ),
        at_least(
            "batch locked snapshot speed-up over per-element lookups, 100K keys",
            v(find(ms, "drain", "x", &["100000"]).or_else(|| find(ms, "drain", "x", &[]))),
            8.0,
        ),
        at_most(
            "full exchange cut of 1M keys (ms)",
            v(find(ms, "drain", "ms", &["exchange", "1048576"])
                .or_else(|| find(ms, "drain", "ms", &["exchange", "1000000"]))),
            1000.0,
        ),
        at_most(
            "full swap cut of 1M keys (ms)",
            v(find(ms, "drain", "ms", &["swap", "1048576"])
                .or_else(|| find(ms, "drain", "ms", &["swap", "1000000"]))),
            1000.0,
        ),
        at_most(
            "data-path slowdown from a concurrent locked reader, many keys",
            v(ms.iter().find(|m| {
                m.section == "reader" && m.unit == "x" && m.tag("keys").is_some_and(|k| k != "1")
            })),
            1.10,
        ),
        at_least(
            "real frames/s with swap attached / with no program",
            v(find(ms, "real", "x", &["swap"])),
            0.9,
        ),
    ]
}

/// A figure for a table: three significant digits or so; "-" for none.
pub fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1e6 {
        format!("{:.3e}", v)
    } else if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Write `ms` as a markdown table under the heading `title`: name, median,
/// unit, ratio, baseline and the number of samples; with `detail`, every
/// sample and the tags as well.
pub fn markdown(
    out: &mut impl Write,
    title: &str,
    ms: &[Measurement],
    detail: bool,
) -> std::io::Result<()> {
    writeln!(out, "\n### {title}\n")?;
    if ms.is_empty() {
        return writeln!(out, "(nothing measured)");
    }
    if detail {
        writeln!(
            out,
            "| what | median | unit | ratio | to | samples | tags |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|")?;
    } else {
        writeln!(out, "| what | median | unit | ratio | to | samples |")?;
        writeln!(out, "|---|---|---|---|---|---|")?;
    }
    for m in ms {
        write!(
            out,
            "| {} | {} | {} | {} | {} |",
            m.name,
            fmt_value(m.value),
            m.unit,
            m.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
            m.baseline.clone().unwrap_or_default(),
        )?;
        if detail {
            let samples: Vec<String> = m.samples.iter().map(|s| fmt_value(*s)).collect();
            let tags: Vec<String> = m.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, " {} | {} |", samples.join(" "), tags.join(" "))?;
        } else {
            writeln!(out, " {} |", m.samples.len())?;
        }
    }
    Ok(())
}

/// Run `netledger bench`: the parts asked for, each printed as a markdown
/// table as it finishes, then the targets; the JSON report and the plot if
/// asked for.
pub fn run(args: BenchCli) -> Result<ExitCode> {
    netledger::preflight()?;
    let started = Instant::now();
    let progress = move |what: &str| {
        eprintln!("bench [{:6.1} s] {what}", started.elapsed().as_secs_f64());
    };
    let opts = Options {
        quick: args.quick,
        rounds: args.rounds.unwrap_or(if args.quick { 1 } else { 5 }),
        progress: &progress,
    };
    let m = machine();
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "## netledger bench{}\n\nkernel {}, {} ({} CPUs); medians over {} round(s); ratios are to the baseline measured in the same run.",
        if args.quick { " --quick" } else { "" },
        m.kernel,
        m.cpu,
        m.cpus,
        opts.rounds
    )?;
    let mut all: Vec<Measurement> = Vec::new();
    for (key, title, part) in PARTS {
        if let Some(only) = &args.only {
            if !only.split(',').any(|o| o.trim() == key) {
                continue;
            }
        }
        progress(title);
        let ms = part(&opts).with_context(|| format!("benchmark part {key}"))?;
        markdown(&mut out, title, &ms, false)?;
        out.flush()?;
        all.extend(ms);
    }
    let targets = targets(&all);
    writeln!(
        out,
        "\n### Targets\n\n| target | measured | bound | result |\n|---|---|---|---|"
    )?;
    for t in &targets {
        writeln!(
            out,
            "| {} | {} | {} | {} |",
            t.what,
            t.value.map(fmt_value).unwrap_or_else(|| "-".into()),
            t.bound,
            match t.pass {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "not measured",
            }
        )?;
    }
    if let Some(path) = &args.json {
        let report = JsonReport {
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: m,
            measurements: &all,
            targets: &targets,
        };
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        serde_json::to_writer_pretty(f, &report)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot(path, &all).with_context(|| format!("drawing {}", path.display()))?;
    }
    progress("done");
    Ok(ExitCode::SUCCESS)
}

/// ns/packet of each program against the number of keys in its map
/// (1 writer, same key), as an SVG.
fn plot(path: &Path, ms: &[Measurement]) -> Result<()> {
    use plotters::prelude::*;
    let mut series: std::collections::BTreeMap<String, Vec<(f64, f64)>> = Default::default();
    for m in ms
        .iter()
        .filter(|m| m.section == "datapath" && m.unit == "ns/packet")
    {
        if m.tag("writers") != Some("1") || m.tag("same_key").is_some_and(|s| s != "true") {
            continue;
        }
        let (Some(program), Some(keys)) = (
            m.tag("program"),
            m.tag("keys").and_then(|k| k.parse::<f64>().ok()),
        ) else {
            continue;
        };
        series
            .entry(program.to_string())
            .or_default()
            .push((keys.max(1.0), m.value));
    }
    let max_y = series.values().flatten().map(|p| p.1).fold(10.0, f64::max) * 1.15;
    let max_x = series.values().flatten().map(|p| p.0).fold(10.0, f64::max) * 2.0;
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "netledger: ns/packet by strategy vs keys in the map (1 writer)",
            ("sans-serif", 20),
        )
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((0.8f64..max_x).log_scale(), 0f64..max_y)?;
    chart
        .configure_mesh()
        .x_desc("keys in the map")
        .y_desc("ns/packet (test_run, median)")
        .draw()?;
    for (i, (name, mut pts)) in series.into_iter().enumerate() {
        pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}
