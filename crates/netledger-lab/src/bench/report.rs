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
    /// Only these parts, comma-separated: datapath, breakdown, exactness,
    /// drain, reader, real, cuts.
    pub only: Option<String>,
}

/// A part of the benchmark: its figures, or why it could not take them.
pub type Part = fn(&Options<'_>) -> Result<Vec<Measurement>>;

/// Every part, in the order they run: (key for `only`, title, part).
pub const PARTS: [(&str, &str, Part); 7] = [
    (
        "datapath",
        "1. Data-path cost (test_run, ns/packet)",
        bench::datapath,
    ),
    (
        "breakdown",
        "1b. Where the data paths' ns go (models, one part taken away at a time)",
        bench::breakdown,
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
    (
        "cuts",
        "6. The service's cuts: take, store commit, finish, CPU",
        bench::cuts,
    ),
];

/// A target of the benchmark: a measured figure and the bound it must meet.
#[derive(Debug, Serialize)]
pub struct Target {
    /// The figure, in words.
    pub what: String,
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

/// The first measurement of `section` with every tag of `tags`.
fn tagged<'a>(
    ms: &'a [Measurement],
    section: &str,
    tags: &[(&str, &str)],
) -> Option<&'a Measurement> {
    ms.iter()
        .find(|m| m.section == section && tags.iter().all(|(k, v)| m.tag(k) == Some(*v)))
}

/// The data-path scenarios the targets are checked in: (writers, same key, keys).
const SCENARIOS: [(&str, &str, &str, &str); 9] = [
    ("1", "true", "1", "1 writer, 1 key"),
    ("1", "true", "10000", "1 writer, 10K keys"),
    ("1", "true", "1000000", "1 writer, 1M keys"),
    ("2", "true", "1", "2 writers, same key, 1 key"),
    ("2", "true", "10000", "2 writers, same key, 10K keys"),
    ("2", "true", "1000000", "2 writers, same key, 1M keys"),
    (
        "2",
        "false",
        "1",
        "2 writers, distinct keys, 1 key (2 populated)",
    ),
    ("2", "false", "10000", "2 writers, distinct keys, 10K keys"),
    ("2", "false", "1000000", "2 writers, distinct keys, 1M keys"),
];

/// The targets of the benchmark, from the measurements of this run.
pub fn targets(ms: &[Measurement]) -> Vec<Target> {
    let at_most = |what: String, value: Option<f64>, bound: f64| Target {
        what,
        value,
        bound: format!("<= {bound}"),
        pass: value.map(|v| v <= bound),
    };
    let at_least = |what: String, value: Option<f64>, bound: f64| Target {
        what,
        value,
        bound: format!(">= {bound}"),
        pass: value.map(|v| v >= bound),
    };
    let v = |m: Option<&Measurement>| m.map(|m| m.value);
    let overhead = |program: &str, reference: &str, w: &str, same: &str, keys: &str| {
        v(tagged(
            ms,
            "datapath",
            &[
                ("program", program),
                ("reference", reference),
                ("writers", w),
                ("same_key", same),
                ("keys", keys),
            ],
        ))
    };
    let mut out = Vec::new();
    for (w, same, keys, what) in SCENARIOS {
        out.push(at_most(
            format!("lock overhead / classic locked hash overhead, {what}"),
            overhead("lock", "naive", w, same, keys),
            1.2,
        ));
    }
    for (w, same, keys, what) in SCENARIOS {
        out.push(at_most(
            format!("swap overhead / per-CPU hash overhead, {what}"),
            overhead("swap", "percpu", w, same, keys),
            1.1,
        ));
    }
    for keys in ["10000", "100000"] {
        out.push(at_most(
            format!("lock writer slowdown, a locked snapshot every 100 ms, {keys} keys"),
            v(tagged(
                ms,
                "reader",
                &[
                    ("keys", keys),
                    ("reader", "locked_100ms"),
                    ("figure", "slowdown"),
                ],
            )),
            1.02,
        ));
    }
    let cut_1m = |strategy: &str| {
        v(tagged(
            ms,
            "cuts",
            &[
                ("strategy", strategy),
                ("keys", "1000000"),
                ("figure", "cut"),
            ],
        ))
    };
    out.push(at_most(
        "full swap cut of 1M keys, kernel side (take + finish, ms)".to_string(),
        cut_1m("swap"),
        300.0,
    ));
    out.push(at_most(
        "full lock cut of 1M keys, kernel side (take + finish, ms)".to_string(),
        cut_1m("lock"),
        1000.0,
    ));
    out.push(at_least(
        "locked snapshot speed-up over per-element lookups, 100K keys".to_string(),
        v(tagged(
            ms,
            "drain",
            &[("keys", "100000"), ("metric", "ratio")],
        )),
        8.0,
    ));
    // Real packets: swap on the better of its two hooks.
    let real = |program: &str, tags: &[(&str, &str)]| {
        let mut t = vec![("program", program)];
        t.extend_from_slice(tags);
        v(tagged(ms, "real", &t))
    };
    let ratio = |p: &str| real(p, &[("metric", "ratio"), ("baseline", "none")]);
    let (xdp, tc) = (ratio("xdp_swap"), ratio("tc_swap"));
    let better = match (xdp, tc) {
        (Some(x), Some(t)) if t > x => Some(("tc_swap", t)),
        (Some(x), _) => Some(("xdp_swap", x)),
        (None, Some(t)) => Some(("tc_swap", t)),
        _ => None,
    };
    out.push(at_least(
        format!(
            "real frames/s, swap on the better hook ({}) / no program",
            better.map_or("-", |b| if b.0 == "tc_swap" { "tc" } else { "XDP" })
        ),
        better.map(|b| b.1),
        0.9,
    ));
    let kept = |p: &str| real(p, &[("metric", "kept frames/s")]);
    out.push(at_least(
        "frames/s counted: swap on the better hook / pmacctd".to_string(),
        match (better.and_then(|b| kept(b.0)), kept("pmacctd")) {
            (Some(n), Some(p)) => Some(n / p),
            _ => None,
        },
        1.0,
    ));
    out
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
    if let Some(only) = &args.only {
        let known: Vec<&str> = PARTS.iter().map(|(key, _, _)| *key).collect();
        if let Some(bad) = only.split(',').map(str::trim).find(|o| !known.contains(o)) {
            anyhow::bail!(
                "--only: no benchmark part {bad:?}; the parts are {}",
                known.join(", ")
            );
        }
    }
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
        std::fs::write(path, json_lines(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.plot {
        plot(path, &all).with_context(|| format!("drawing {}", path.display()))?;
    }
    progress("done");
    Ok(ExitCode::SUCCESS)
}

/// The report as JSON with one measurement or target per line: a run of
/// thousands of samples stays small and diffs line by line.
fn json_lines(report: &JsonReport<'_>) -> Result<String> {
    fn list<T: Serialize>(items: &[T]) -> Result<String> {
        let lines: Vec<String> = items
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        Ok(format!("[\n{}\n]", lines.join(",\n")))
    }
    Ok(format!(
        "{{\"command\":{},\n\"machine\":{},\n\"measurements\":{},\n\"targets\":{}}}\n",
        serde_json::to_string(&report.command)?,
        serde_json::to_string(&report.machine)?,
        list(report.measurements)?,
        list(report.targets)?,
    ))
}

/// The cut-time plot's path: `plot`'s with `-cuts` after its stem.
pub fn cuts_plot_path(plot: &Path) -> PathBuf {
    let stem = plot
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "bench".into());
    plot.with_file_name(format!("{stem}-cuts.svg"))
}

type Series = std::collections::BTreeMap<String, Vec<(f64, f64)>>;

/// Two plots (SVG): ns/packet of each program against the number of keys in
/// its map (1 writer) at `path`, and the cut times of both strategies
/// against the number of keys with traffic at [`cuts_plot_path`].
fn plot(path: &Path, ms: &[Measurement]) -> Result<()> {
    let mut series = Series::new();
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
        let name = match program {
            "ml_all" => "lock before (model)",
            "ms_all" => "swap before (model)",
            "ml_s192c" => "lock, counters off the lock's line (tried)",
            "naive" => "classic locked hash",
            "percpu" => "per-CPU hash",
            "plain" => "plain += (racy)",
            "atomic" => "two atomic adds",
            "bare_lock" => "bare spin-locked counter",
            "bare_percpu" => "bare per-CPU counter",
            "empty" => "empty program",
            p => p,
        };
        series
            .entry(name.to_string())
            .or_default()
            .push((keys.max(1.0), m.value));
    }
    draw(
        path,
        "netledger: ns/packet vs keys in the map (1 writer, test_run)",
        "keys in the map",
        "ns/packet (median)",
        series,
        false,
    )?;
    let mut cuts = Series::new();
    for m in ms.iter().filter(|m| m.section == "cuts" && m.unit == "ms") {
        let (Some(strategy), Some(figure), Some(keys)) = (
            m.tag("strategy"),
            m.tag("figure"),
            m.tag("keys").and_then(|k| k.parse::<f64>().ok()),
        ) else {
            continue;
        };
        let name = match figure {
            "cut" => format!("{strategy}: take + finish"),
            "take" => format!("{strategy}: take"),
            "finish" => format!("{strategy}: finish"),
            "commit" => format!("{strategy}: store commit"),
            _ => continue,
        };
        cuts.entry(name)
            .or_default()
            .push((keys, m.value.max(0.01)));
    }
    if !cuts.is_empty() {
        draw(
            &cuts_plot_path(path),
            "netledger: cut time vs keys with traffic (two-phase cut, and the store commit)",
            "keys with traffic",
            "ms (median, log scale)",
            cuts,
            true,
        )?;
    }
    Ok(())
}

/// One line per series, x on a log scale (y too with `log_y`).
fn draw(
    path: &Path,
    caption: &str,
    x_desc: &str,
    y_desc: &str,
    series: Series,
    log_y: bool,
) -> Result<()> {
    use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
    use plotters::prelude::*;
    let pts = || series.values().flatten();
    let max_y = pts().map(|p| p.1).fold(1.0, f64::max);
    let min_y = pts().map(|p| p.1).fold(f64::MAX, f64::min);
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    fn lines<Y>(
        root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
        caption: &str,
        (x_desc, y_desc): (&str, &str),
        y: Y,
        series: &Series,
    ) -> Result<()>
    where
        Y: AsRangedCoord<Value = f64>,
        Y::CoordDescType: ValueFormatter<f64> + Ranged<ValueType = f64>,
    {
        let (lo, hi) = {
            let p: Vec<f64> = series.values().flatten().map(|p| p.0).collect();
            (
                p.iter().copied().fold(f64::MAX, f64::min).min(1.0) * 0.8,
                p.iter().copied().fold(10.0, f64::max) * 2.0,
            )
        };
        let mut chart = ChartBuilder::on(root)
            .caption(caption, ("sans-serif", 20))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d((lo..hi).log_scale(), y)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let mut pts = pts.clone();
            pts.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    }
    if log_y {
        lines(
            &root,
            caption,
            (x_desc, y_desc),
            (min_y * 0.5..max_y * 2.0).log_scale(),
            &series,
        )?;
    } else {
        lines(
            &root,
            caption,
            (x_desc, y_desc),
            0f64..max_y * 1.15,
            &series,
        )?;
    }
    root.present()?;
    Ok(())
}
