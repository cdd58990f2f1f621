//! SVG charts drawn from a results JSON (the `samples` the harness writes):
//! create→ready against the number of agents, and one chart per capability
//! figure (load-balancer create, port add, stop→start). `--render-only JSON`
//! draws them from a file, so CI can check this code against a small fixture.

use plotters::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

use crate::stats::stat;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// A capability chart: results section, file, title, (legend label, sample key)s.
type Distribution = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const SIZE: (u32, u32) = (860, 500);
const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0xff, 0x7f, 0x0e),
];

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// Draws every chart the samples of `doc` allow into `dir`; returns the files.
pub fn render(doc: &Value, dir: &Path) -> Res<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let samples = &doc["samples"];
    let mut written = vec![];
    if samples["scale"].is_object() {
        let path = dir.join("scale.svg");
        scale(&samples["scale"], &path)?;
        written.push(path);
    }
    let distributions: [Distribution; 4] = [
        (
            "cycle",
            "lb-create.svg",
            "create→ready, 1 server: library vs raw Docker API floor",
            &[
                ("library, with LB", "a_lb_create_ms"),
                ("floor with LB, pipelined", "floor_lb_pipelined_create_ms"),
                ("floor with LB, sequential", "floor_lb_sequential_create_ms"),
                ("library, no LB", "a_direct_create_ms"),
                ("floor, no LB", "floor_direct_create_ms"),
            ],
        ),
        (
            "ports",
            "port-add.svg",
            "port add on a running cluster (k3d: ≥ 6000 ms, API down)",
            &[
                ("library", "library_ms"),
                ("floor: create, PUT, start, log wait", "floor_ms"),
            ],
        ),
        (
            "stop_start",
            "stop-start.svg",
            "stop→start→ready, 1 server + LB",
            &[
                ("library", "library_ms"),
                ("floor, parallel stops, LB pipelined", "floor_parallel_ms"),
                ("floor, one after another", "floor_sequential_ms"),
                ("delete + create (KECS today)", "delete_create_ms"),
            ],
        ),
        (
            "registry",
            "registry.svg",
            "create→ready with a registry vs without, 1 server + LB",
            &[
                ("library, registry made by the create", "with_registry_ms"),
                ("library, no registry", "without_ms"),
                (
                    "create, then registry connect (restart; KECS today, minus its 5 s sleep)",
                    "connect_after_ms",
                ),
            ],
        ),
    ];
    for (section, file, title, series) in distributions {
        let data: Vec<(&str, Vec<f64>)> = series
            .iter()
            .map(|(label, key)| (*label, floats(&samples[section][*key])))
            .filter(|(_, s)| !s.is_empty())
            .collect();
        if data.is_empty() {
            continue;
        }
        let path = dir.join(file);
        distribution(&path, title, &data)?;
        written.push(path);
    }
    Ok(written)
}

/// create→ready (ms) against agents: one line per peer through the medians and
/// a p10–p90 band around it.
fn scale(scale: &Value, path: &Path) -> Res<()> {
    let mut points: Vec<(u32, &Value)> = scale
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.strip_prefix("agents_")?.parse().ok()?, v)))
        .collect();
    points.sort_by_key(|(a, _)| *a);
    let series = [
        ("library", "library_ms"),
        (
            "floor, nodes in parallel, LB pipelined",
            "floor_parallel_ms",
        ),
        ("floor, one after another", "floor_sequential_ms"),
        (
            "floor, agents once the server's API runs",
            "floor_pipelined_ms",
        ),
    ];
    let max_x = points
        .last()
        .map(|(a, _)| *a as f64)
        .unwrap_or(1.0)
        .max(1.0);
    let max_y = points
        .iter()
        .flat_map(|(_, v)| series.iter().map(move |(_, k)| stat(&floats(&v[*k])).p90))
        .filter(|x| x.is_finite())
        .fold(1.0, f64::max)
        * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "create→ready vs agents (1 server + LB), median with p10–p90 band",
            ("sans-serif", 24),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("agents")
        .y_desc("ms")
        .label_style(("sans-serif", 15))
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, (label, key)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let stats: Vec<(f64, crate::stats::Stat)> = points
            .iter()
            .map(|(a, v)| (*a as f64, stat(&floats(&v[*key]))))
            .filter(|(_, s)| s.n > 0)
            .collect();
        if stats.is_empty() {
            continue;
        }
        let band: Vec<(f64, f64)> = stats
            .iter()
            .map(|(x, s)| (*x, s.p90))
            .chain(stats.iter().rev().map(|(x, s)| (*x, s.p10)))
            .collect();
        chart.draw_series(std::iter::once(Polygon::new(band, color.mix(0.15))))?;
        chart
            .draw_series(LineSeries::new(
                stats.iter().map(|(x, s)| (*x, s.median)),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            stats
                .iter()
                .map(|(x, s)| Circle::new((*x, s.median), 3, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

/// One column per peer: every sample as a dot, the p10–p90 range as a bar and
/// the median as a black tick.
fn distribution(path: &Path, title: &str, data: &[(&str, Vec<f64>)]) -> Res<()> {
    let max_y = data
        .iter()
        .flat_map(|(_, s)| s.iter().copied())
        .fold(1.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(20)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(data.len() as f64 - 0.5), 0.0..max_y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms (dots: runs; bar: p10–p90; black: median)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .label_style(("sans-serif", 15))
        .draw()?;
    for (i, (label, samples)) in data.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let x = i as f64;
        let s = stat(samples);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.05, s.p10), (x + 0.3, s.p90)],
                color.mix(0.3).filled(),
            )))?
            .label(format!("{label}: median {:.0} ms", s.median))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], color.filled()));
        let n = samples.len().max(1) as f64;
        chart.draw_series(samples.iter().enumerate().map(|(j, y)| {
            // spread the dots sideways by run order, so equal values stay visible
            Circle::new((x - 0.3 + 0.25 * j as f64 / n, *y), 3, color.filled())
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x - 0.32, s.median), (x + 0.32, s.median)],
            BLACK.stroke_width(2),
        )))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The committed fixture renders every chart (what CI's --render-only checks).
    #[test]
    fn fixture_renders_every_chart() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("render-fixture.json");
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let dir = std::env::temp_dir().join(format!("kecs-bench-charts-{}", std::process::id()));
        let written = super::render(&doc, &dir).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        let svgs: Vec<String> = written
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            names,
            [
                "scale.svg",
                "lb-create.svg",
                "port-add.svg",
                "stop-start.svg",
                "registry.svg"
            ]
        );
        for svg in svgs {
            assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("library"), "legend missing");
        }
    }
}
