//! Draws the PNG plots of `docs/benchmarks.md` from the benchmarks' own results (run by
//! `scripts/bench-plots`, which runs the benchmarks first):
//!
//! * `proxy-rps.png`, `proxy-p99.png`: requests per second and p99 by connections for the nginx
//!   plaintext, nginx mTLS and sidecar pairs — `docs/bench-proxy-results.md`, written by
//!   `scripts/bench-proxy`;
//! * `establish.png`: full mutual-auth establishments per second per core, by signature and suite,
//!   against rustls — criterion's estimates of `cargo bench -p onem2m-sa --bench establish`
//!   (`target/criterion/establish/`);
//! * `scale.png`: lookups and requests per second from 1 to 1,000,000 SAs in one ingress, against
//!   1 SA — the table `cargo bench -p onem2m-sa-tower --bench scale` printed, as kept in
//!   `docs/benchmarks.md`;
//! * `memory.png`: bytes per SA per end against the 2 KiB goal — the table of
//!   `cargo bench -p onem2m-sa --bench memory`, as kept in `docs/benchmarks.md`.
//!
//! `benchplot <repository root> <output directory>`; a source that is missing is reported and its
//! plot skipped, so that one benchmark not run does not stop the others.
//!
//! `benchplot --establish-table <criterion's establish directory>` prints the establishment
//! table of `docs/benchmarks.md` (ours against rustls, per signature and suite) from the same
//! estimates; `scripts/bench-docs` splices it in.

#![forbid(unsafe_code)]

use std::error::Error;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// One plot to draw: its files' names and how.
type Plot<'a> = (&'static str, Box<dyn Fn() -> Result<()> + 'a>);

/// Where the system keeps the font the plots are drawn with (Debian `fonts-dejavu-core`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const SIZE: (u32, u32) = (900, 520);

fn main() {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.next_if(|a| a == "--establish-table").is_some() {
        let Some(dir) = args.next() else {
            eprintln!("usage: benchplot --establish-table <target/criterion/establish>");
            std::process::exit(2);
        };
        match establish_table(Path::new(&dir)) {
            Ok(table) => print!("{table}"),
            Err(e) => {
                eprintln!("benchplot: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let (Some(root), Some(out)) = (args.next(), args.next()) else {
        eprintln!("usage: benchplot <repository root> <output directory>");
        std::process::exit(2);
    };
    let (root, out) = (PathBuf::from(root), PathBuf::from(out));
    if let Err(e) = run(&root, &out) {
        eprintln!("benchplot: {e}");
        std::process::exit(1);
    }
}

fn run(root: &Path, out: &Path) -> Result<()> {
    let font = std::fs::read(FONT).map_err(|e| format!("{FONT}: {e} (apt-get install fonts-dejavu-core)"))?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, font.leak())
        .map_err(|_| format!("{FONT} is not a font"))?;
    std::fs::create_dir_all(out)?;
    let benchmarks = std::fs::read_to_string(root.join("docs/benchmarks.md"))?;
    let plots: [Plot<'_>; 4] = [
        (
            "proxy-rps.png / proxy-p99.png",
            Box::new(|| proxy(&std::fs::read_to_string(root.join("docs/bench-proxy-results.md"))?, out)),
        ),
        ("establish.png", Box::new(|| establish(&root.join("target/criterion/establish"), out))),
        ("scale.png", Box::new(|| scale(&benchmarks, out))),
        ("memory.png", Box::new(|| memory(&benchmarks, out))),
    ];
    let mut failed = 0;
    for (name, plot) in plots {
        match plot() {
            Ok(()) => println!("wrote {}", out.join(name).display()),
            Err(e) => {
                eprintln!("{name}: skipped: {e}");
                failed += 1;
            }
        }
    }
    if failed == 4 { Err("no plot drawn".into()) } else { Ok(()) }
}

/// The cells of the markdown table rows that follow the header line starting with `header`.
fn table(doc: &str, header: &str) -> Result<Vec<Vec<String>>> {
    let mut lines = doc.lines().skip_while(|l| !l.starts_with(header));
    lines.next().ok_or_else(|| format!("no table `{header}`"))?;
    let rows: Vec<Vec<String>> = lines
        .skip(1) // the |---| line
        .take_while(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect();
    if rows.is_empty() {
        return Err(format!("table `{header}` has no rows").into());
    }
    Ok(rows)
}

/// A number in a table cell: `38.85 M`, `3511 k`, `2,252 B`, `**0.98**`, `1.00×`.
fn number(cell: &str) -> Result<f64> {
    let cell = cell.replace(['*', ',', '×'], "");
    let mut parts = cell.split_whitespace();
    let value: f64 = parts.next().ok_or("empty cell")?.parse().map_err(|_| format!("`{cell}` is not a number"))?;
    Ok(match parts.next() {
        Some("M") => value * 1e6,
        Some("k") => value * 1e3,
        _ => value,
    })
}

const COLORS: [RGBColor; 4] =
    [RGBColor(120, 120, 120), RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44)];

/// A y-axis label: whole numbers for large values, two decimals for ratios.
fn y_label(y: &f64) -> String {
    if y.abs() >= 100.0 { format!("{y:.0}") } else { format!("{y:.2}") }
}

/// One line per series over x, with points: x on a logarithmic axis when `log_x`; an optional
/// horizontal goal line.
fn lines(
    path: &Path,
    (title, x_desc, y_desc): (&str, &str, &str),
    log_x: bool,
    series: &[(String, Vec<(f64, f64)>)],
    goal: Option<(f64, &str)>,
) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let xs = || series.iter().flat_map(|(_, p)| p.iter().map(|&(x, _)| x));
    let (x_min, x_max) = (xs().fold(f64::MAX, f64::min), xs().fold(0f64, f64::max));
    let y_max =
        series.iter().flat_map(|(_, p)| p.iter().map(|&(_, y)| y)).chain(goal.map(|g| g.0)).fold(0f64, f64::max) * 1.15;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 20)).margin(14).x_label_area_size(44).y_label_area_size(72);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .x_label_formatter(&|x| format!("{x:.0}"))
                .y_label_formatter(&y_label)
                .label_style(("sans-serif", 13))
                .draw()?;
            for (i, (name, points)) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
            }
            if let Some((value, label)) = goal {
                chart
                    .draw_series(LineSeries::new([(x_min, value), (x_max, value)], BLACK.stroke_width(1)))?
                    .label(label)
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(1)));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerLeft)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()?;
        }};
    }
    if log_x {
        draw!(builder.build_cartesian_2d((x_min * 0.8..x_max * 1.25).log_scale(), 0f64..y_max)?);
    } else {
        draw!(builder.build_cartesian_2d(0f64..x_max * 1.1, 0f64..y_max)?);
    }
    root.present()?;
    Ok(())
}

/// Grouped bars: one group per category, one bar per series; an optional horizontal goal line.
fn bars(
    path: &Path,
    title: &str,
    y_desc: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    goal: Option<(f64, &str)>,
) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let y_max = series.iter().flat_map(|(_, v)| v.iter().copied()).chain(goal.map(|g| g.0)).fold(0f64, f64::max) * 1.2;
    let n = categories.len() as f64;
    let cats = categories.to_vec();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(0f64..n, 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(categories.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 && i < cats.len() { cats[i].clone() } else { String::new() }
        })
        .y_desc(y_desc)
        .y_label_formatter(&y_label)
        .label_style(("sans-serif", 12))
        .draw()?;
    let width = 0.8 / series.len() as f64;
    for (s, (name, values)) in series.iter().enumerate() {
        let color = COLORS[(s + 1) % COLORS.len()];
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let x0 = i as f64 + 0.1 + s as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width * 0.92, v)], color.filled())
            }))?
            .label(name.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
    }
    if let Some((value, label)) = goal {
        chart
            .draw_series(LineSeries::new([(0.0, value), (n, value)], BLACK.stroke_width(2)))?
            .label(label)
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()?;
    root.present()?;
    Ok(())
}

/// `docs/bench-proxy-results.md`: `| connections | pair | req/s | p99 ms | …`.
fn proxy(results: &str, out: &Path) -> Result<()> {
    let rows = table(results, "| connections | pair |")?;
    let mut rps: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    let mut p99: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for row in &rows {
        let [c, pair, r, p, ..] = row.as_slice() else { return Err("short row".into()) };
        let c = number(c)?;
        for (all, y) in [(&mut rps, number(r)?), (&mut p99, number(p)?)] {
            match all.iter_mut().find(|(name, _)| name == pair) {
                Some((_, points)) => points.push((c, y)),
                None => all.push((pair.clone(), vec![(c, y)])),
            }
        }
    }
    let note = results.lines().find(|l| l.starts_with("Generated by")).and_then(|l| l.split(" at commit ").nth(1));
    let commit = note.and_then(|n| n.split(':').next()).unwrap_or("?");
    let x = "concurrent connections (wrk -t1, keep-alive)";
    let title = format!("HTTP requests/s through each proxy pair (commit {commit})");
    lines(&out.join("proxy-rps.png"), (&title, x, "requests per second"), false, &rps, None)?;
    let title = format!("p99 latency through each proxy pair (commit {commit})");
    lines(&out.join("proxy-p99.png"), (&title, x, "p99 (ms)"), false, &p99, None)
}

/// Criterion's median estimate of one benchmark, in µs.
fn estimate(dir: &Path, id: &str) -> Result<f64> {
    let path = dir.join(id).join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?)?;
    let ns = json["median"]["point_estimate"].as_f64().ok_or("no median in estimates.json")?;
    Ok(ns / 1000.0)
}

/// Our establishment benchmarks and the rustls handshake each is held against: (label, ours,
/// rustls).
const ESTABLISH_PAIRS: [(&str, &str, &str); 4] = [
    ("Ed25519\nX25519", "Ed25519/X25519_AES128GCM_SHA256", "rustls-tls13-mutual/Ed25519"),
    ("ES256\nX25519", "EcdsaP256Sha256/X25519_AES128GCM_SHA256", "rustls-tls13-mutual/ES256"),
    (
        "Ed25519\nX25519MLKEM768",
        "Ed25519/X25519MLKEM768_AES256GCM_SHA384",
        "rustls-tls13-mutual/Ed25519-X25519MLKEM768",
    ),
    (
        "ES256\nX25519MLKEM768",
        "EcdsaP256Sha256/X25519MLKEM768_AES256GCM_SHA384",
        "rustls-tls13-mutual/ES256-X25519MLKEM768",
    ),
];

/// The establishment table: per signature and suite, ours for a repeat peer, with the
/// authentication challenge and for a new peer, the rustls handshake, and the time ratios.
fn establish_table(dir: &Path) -> Result<String> {
    use std::fmt::Write;
    let mut t = String::from(
        "| ours (signature, suite) | repeat peer µs | with the authentication challenge µs | new peer µs | rustls µs \
         | ours ÷ rustls (time): default, auth. challenge |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for (label, ours_id, rustls_id) in ESTABLISH_PAIRS {
        let (alg, suite) = ours_id.split_once('/').ok_or("benchmark id without a suite")?;
        let repeat = estimate(dir, ours_id)?;
        let auth = estimate(dir, &format!("{alg}-auth-challenge/{suite}"))?;
        let new = estimate(dir, &format!("{alg}-new-peer/{suite}"))?;
        let rustls = estimate(dir, rustls_id)?;
        let (sig, _) = label.split_once('\n').ok_or("label")?;
        let ratio = repeat / rustls;
        let ratio = if ratio <= 1.0 { format!("**{ratio:.2}**") } else { format!("{ratio:.2}") };
        writeln!(
            t,
            "| {sig}, {suite} | {repeat:.1} | {auth:.1} | {new:.1} | {rustls:.1} | {ratio}, {:.2} |",
            auth / rustls
        )?;
    }
    Ok(t)
}

/// Establishments per second per core, ours (repeat peer) against the matching rustls handshake.
fn establish(dir: &Path, out: &Path) -> Result<()> {
    let (mut ours, mut theirs, mut cats) = (Vec::new(), Vec::new(), Vec::new());
    for (label, ours_id, rustls_id) in ESTABLISH_PAIRS {
        ours.push(1e6 / estimate(dir, ours_id)?);
        theirs.push(1e6 / estimate(dir, rustls_id)?);
        cats.push(label.replace('\n', " / "));
    }
    bars(
        &out.join("establish.png"),
        "Full mutual-auth establishments per second, one core (higher is better)",
        "establishments per second",
        &cats,
        &[("onem2m-sa SA (repeat peer)".into(), ours), ("rustls 0.23 TLS 1.3 mTLS handshake".into(), theirs)],
        None,
    )
}

/// `docs/benchmarks.md`, the scale bench's table: `| SAs | lookups/s | vs 1 SA | data path req/s | vs 1 SA | ingress req/s | …`.
fn scale(doc: &str, out: &Path) -> Result<()> {
    let rows = table(doc, "| SAs | lookups/s |")?;
    let (mut lookups, mut data, mut ingress) = (Vec::new(), Vec::new(), Vec::new());
    for row in &rows {
        let n = number(&row[0])?;
        lookups.push((n, number(&row[2])?));
        data.push((n, number(&row[4])?));
        ingress.push((n, number(&row[6])?));
    }
    lines(
        &out.join("scale.png"),
        ("1 → 1,000,000 SAs in one ingress, against 1 SA", "SAs installed", "rate ÷ the rate at 1 SA"),
        true,
        &[
            ("SaTable lookups".into(), lookups),
            ("data path requests".into(), data),
            ("ingress requests".into(), ingress),
        ],
        Some((0.5, "goal: within 2× of 1 SA")),
    )
}

/// `docs/benchmarks.md`, the memory bench's per-end table: `| what is kept | bytes per SA |`.
fn memory(doc: &str, out: &Path) -> Result<()> {
    let rows = table(doc, "| what is kept | bytes per SA |")?;
    let cats: Vec<String> = rows.iter().map(|r| r[0].split(" (").next().unwrap_or_default().to_owned()).collect();
    let values = rows.iter().map(|r| number(&r[1])).collect::<Result<Vec<_>>>()?;
    bars(
        &out.join("memory.png"),
        "Memory per established SA (RSS growth over 2,000 SAs)",
        "bytes per SA",
        &cats,
        &[("measured".into(), values)],
        Some((2048.0, "goal: 2 KiB per SA per end")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_and_numbers() {
        let doc = "text\n| SAs | lookups/s | x |\n|---|---|---|\n| 1 | 38.85 M | **1.00×** |\n| 1000 | 2,252 B | 3511 k |\n\nafter";
        let rows = table(doc, "| SAs | lookups/s |").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(number(&rows[0][1]).unwrap(), 38.85e6);
        assert_eq!(number(&rows[0][2]).unwrap(), 1.0);
        assert_eq!(number(&rows[1][1]).unwrap(), 2252.0);
        assert_eq!(number(&rows[1][2]).unwrap(), 3.511e6);
        assert!(table(doc, "| nothing |").is_err());
        assert!(number("n/a").is_err());
    }
}
