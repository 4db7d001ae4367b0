//! `--svg FILE`: latency CDFs, warm round trips on the left (sprout and the
//! floor), cold starts on the right (sprout and the per-request peers).

use std::path::Path;

use plotters::prelude::*;

use crate::functions::Runtime;
use crate::peers::PeerKind;
use crate::results::{size_label, Results, SMALL};
use crate::stats::{us, Samples};

type Series = (String, Vec<(f64, f64)>, bool);

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
        .x_desc("latency, microseconds (log scale)")
        .y_desc("fraction of requests")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    for (i, (label, points, primary)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = color.stroke_width(if *primary { 3 } else { 1 });
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
        warm.push((format!("floor {}", size_label(size)), cdf(samples), false));
        for runtime in Runtime::ALL {
            if let Some(s) = results.warm.get(&(runtime, size)) {
                let label = format!("sprout {} {}", runtime.as_str(), size_label(size));
                warm.push((label, cdf(s), true));
            }
        }
    }
    let mut cold: Vec<Series> = Vec::new();
    for runtime in Runtime::ALL {
        let rt = runtime.as_str();
        if let Some(s) = results.cold_pool.get(&runtime) {
            cold.push((format!("sprout {rt} from pool"), cdf(s), true));
        }
        if let Some(s) = results.cold_empty.get(&runtime) {
            cold.push((format!("sprout {rt} empty pool"), cdf(s), true));
        }
        for peer in PeerKind::ALL {
            if let Some(s) = results.peers.get(&(peer, runtime)) {
                cold.push((format!("{} {rt}", peer.as_str()), cdf(s), false));
            }
        }
    }
    let root = SVGBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(620);
    panel(&left, "warm round trip, 1 in flight, CDF", &warm)?;
    panel(
        &right,
        &format!(
            "cold start / per-request start, {} payload, CDF",
            size_label(SMALL)
        ),
        &cold,
    )?;
    root.present()?;
    Ok(())
}
