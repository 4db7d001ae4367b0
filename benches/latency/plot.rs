//! `--svg FILE`: latency CDFs in three panels: warm round trips (sprout and
//! the floor), then native and python cold starts (sprout from the pool and
//! with the pool empty, and the per-request peers).

use std::path::Path;

use plotters::prelude::*;

use crate::functions::Runtime;
use crate::peers::PeerKind;
use crate::results::{size_label, Results, SMALL};
use crate::stats::{us, Samples};

/// Label, CDF points, colour, line width.
type Series = (String, Vec<(f64, f64)>, RGBColor, u32);

const FLOOR: RGBColor = RGBColor(120, 120, 120);
const NATIVE: RGBColor = RGBColor(0, 128, 64);
const PYTHON: RGBColor = RGBColor(30, 90, 200);
const POOLED: RGBColor = RGBColor(0, 150, 70);
const EMPTY: RGBColor = RGBColor(40, 90, 220);

fn peer_color(peer: PeerKind) -> RGBColor {
    match peer {
        PeerKind::ForkExec => RGBColor(110, 110, 110),
        PeerKind::Bwrap => RGBColor(230, 140, 0),
        PeerKind::Runc => RGBColor(200, 30, 30),
        PeerKind::Crun => RGBColor(150, 50, 170),
    }
}

/// At most 400 points of the empirical CDF, in microseconds.
fn cdf(samples: &Samples) -> Vec<(f64, f64)> {
    let all = samples.all_sorted();
    if all.is_empty() {
        return Vec::new();
    }
    let steps = all.len().min(400);
    (1..=steps)
        .map(|i| {
            let idx = (i * all.len()).div_ceil(steps) - 1;
            (us(all[idx]), (idx + 1) as f64 / all.len() as f64)
        })
        .collect()
}

/// Log-axis ticks: only 1, 2 and 5 times a power of ten get a label.
fn tick(v: &f64) -> String {
    let magnitude = 10f64.powf(v.log10().floor());
    let mantissa = (v / magnitude).round() as u32;
    if ![1, 2, 5].contains(&mantissa) {
        return String::new();
    }
    if *v >= 1000.0 {
        format!("{} ms", v / 1000.0)
    } else {
        format!("{v:.0} us")
    }
}

fn panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    title: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    let xs = series.iter().flat_map(|s| s.1.iter().map(|p| p.0));
    let lo = xs.clone().fold(f64::INFINITY, f64::min).max(1.0) * 0.8;
    let hi = xs.fold(0.0, f64::max) * 1.25;
    if !lo.is_finite() || hi <= lo {
        return Ok(());
    }
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(48)
        .build_cartesian_2d((lo..hi).log_scale(), 0f64..1f64)?;
    chart
        .configure_mesh()
        .x_desc("latency (log scale)")
        .y_desc("fraction of requests")
        .x_label_formatter(&tick)
        .light_line_style(WHITE)
        .draw()?;
    for (label, points, color, width) in series {
        let style = color.stroke_width(*width);
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 12))
        .draw()?;
    Ok(())
}

pub fn write(results: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let mut warm: Vec<Series> = Vec::new();
    for (&size, samples) in &results.floor {
        if size > 4096 {
            continue;
        }
        let width = if size == SMALL { 3 } else { 1 };
        let label = |what: &str| format!("{what} {}", size_label(size));
        warm.push((label("floor"), cdf(samples), FLOOR, width));
        for (runtime, color) in [(Runtime::Native, NATIVE), (Runtime::Python, PYTHON)] {
            if let Some(s) = results.warm.get(&(runtime, size)) {
                let what = format!("sprout {}", runtime.as_str());
                warm.push((label(&what), cdf(s), color, width));
            }
        }
    }
    let cold = |runtime: Runtime| -> Vec<Series> {
        let mut series = Vec::new();
        if let Some(s) = results.cold_pool.get(&runtime) {
            series.push(("sprout, from pool".into(), cdf(s), POOLED, 3));
        }
        if let Some(s) = results.cold_empty.get(&runtime) {
            series.push(("sprout, empty pool".into(), cdf(s), EMPTY, 3));
        }
        for peer in PeerKind::ALL {
            if let Some(s) = results.peers.get(&(peer, runtime)) {
                let label = format!("{} per request", peer.as_str());
                series.push((label, cdf(s), peer_color(peer), 2));
            }
        }
        series
    };
    let root = SVGBackend::new(path, (1500, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((1, 3));
    panel(&panels[0], "warm round trip, 1 in flight", &warm)?;
    for (area, runtime) in panels[1..].iter().zip(Runtime::ALL) {
        let title = format!(
            "{} cold start vs peers, {} payload",
            runtime.as_str(),
            size_label(SMALL)
        );
        panel(area, &title, &cold(runtime))?;
    }
    root.present()?;
    Ok(())
}
