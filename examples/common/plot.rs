//! Line plots saved as PNG (plotters, with the DejaVu font loaded at run time).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::FontStyle;

/// One named curve.
pub struct Series {
    /// Legend label.
    pub name: String,
    /// (x, y) points.
    pub points: Vec<(f64, f64)>,
}

/// One series per distinct name (in order of first appearance), the point-by-point mean of the
/// curves with that name (cut to the shortest of them).
pub fn mean_by_name(curves: Vec<(String, Vec<(f64, f64)>)>) -> Vec<Series> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in &curves {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
        .into_iter()
        .map(|name| {
            let group: Vec<&Vec<(f64, f64)>> = curves
                .iter()
                .filter(|c| c.0 == name)
                .map(|c| &c.1)
                .collect();
            let n = group.iter().map(|c| c.len()).min().unwrap_or(0);
            let k = group.len().max(1) as f64;
            let points = (0..n)
                .map(|i| {
                    let (x, y) = group
                        .iter()
                        .fold((0.0, 0.0), |(x, y), c| (x + c[i].0, y + c[i].1));
                    (x / k, y / k)
                })
                .collect();
            Series { name, points }
        })
        .collect()
}

/// Most curves drawn in one panel; more are split over several panels.
pub const MAX_CURVES: usize = 7;

/// Splits `series` over panels of at most `max` curves: `path` itself when they fit, otherwise
/// `stem_1.png`, `stem_2.png`, … each holding the first series (the reference, e.g. the
/// standard model) and the next `max − 1` others. Returns `(path, series, title suffix)` per
/// panel.
pub fn panels(path: &Path, series: &[Series], max: usize) -> Vec<(PathBuf, Vec<Series>, String)> {
    let copy = |s: &Series| Series {
        name: s.name.clone(),
        points: s.points.clone(),
    };
    if series.len() <= max.max(2) {
        return vec![(
            path.to_path_buf(),
            series.iter().map(copy).collect(),
            String::new(),
        )];
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("plot");
    let ext = path.extension().and_then(|s| s.to_str()).unwrap_or("png");
    let chunks: Vec<&[Series]> = series[1..].chunks(max.max(2) - 1).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut panel = vec![copy(&series[0])];
            panel.extend(chunk.iter().map(copy));
            (
                path.with_file_name(format!("{stem}_{}.{ext}", i + 1)),
                panel,
                format!(" ({}/{n})", i + 1),
            )
        })
        .collect()
}

const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers a sans-serif font once; false when none is found (text is then skipped).
pub fn font_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        FONT_PATHS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .is_some_and(|bytes| {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok()
            })
    })
}

/// Draws `series` as lines into a PNG at `path`, with `x` on a log₂ axis whose ticks sit at the
/// powers of two and read as the plain values (32, 64, 128, …): for lengths that double.
pub fn line_plot_log2_x(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<(), String> {
    let log2: Vec<Series> = series
        .iter()
        .map(|s| Series {
            name: s.name.clone(),
            points: s
                .points
                .iter()
                .filter(|p| p.0 > 0.0)
                .map(|&(x, y)| (x.log2(), y))
                .collect(),
        })
        .collect();
    draw_lines(path, title, x_label, y_label, &log2, XAxis::Log2)
}

/// Draws `series` as lines into a PNG at `path`. Returns an error message instead of
/// panicking when the plot cannot be drawn (e.g. no font on the machine).
pub fn line_plot(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    log_x: bool,
) -> Result<(), String> {
    let axis = if log_x { XAxis::Log10 } else { XAxis::Linear };
    draw_lines(path, title, x_label, y_label, series, axis)
}

/// How the x axis maps the data.
#[derive(Clone, Copy, PartialEq, Eq)]
enum XAxis {
    Linear,
    Log10,
    /// The points are already `log₂ x`; ticks at integers, labelled `2^k`.
    Log2,
}

fn draw_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    axis: XAxis,
) -> Result<(), String> {
    if !font_ready() {
        return Err(format!(
            "no TrueType font found in {FONT_PATHS:?}; skipped {}",
            path.display()
        ));
    }
    let all = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in all {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err(format!("nothing to plot for {}", path.display()));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        y1 = y0 + 1.0;
    }
    let pad = 0.04 * (y1 - y0);
    // The legend gets its own column right of the axes, so it never hides a curve.
    let legend_width = if series.len() > 1 {
        let longest = series
            .iter()
            .map(|s| s.name.chars().count())
            .max()
            .unwrap_or(0);
        (60 + 8 * longest as u32).clamp(120, 320)
    } else {
        0
    };
    let root = BitMapBackend::new(path, (960 + legend_width, 600)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let (plot_area, legend_area) = root.split_horizontally(960);
        let mut builder = ChartBuilder::on(&plot_area);
        builder
            .caption(title, ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(64);
        let colors = |i: usize| Palette99::pick(i).stroke_width(2);
        macro_rules! finish {
            ($chart:expr) => {{
                let mut chart = $chart;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .label_style(("sans-serif", 15))
                    .draw()?;
                finish!(@lines chart);
            }};
            (@lines $chart:ident) => {{
                for (i, s) in series.iter().enumerate() {
                    $chart.draw_series(LineSeries::new(s.points.iter().copied(), colors(i)))?;
                }
            }};
        }
        match axis {
            XAxis::Log10 => finish!(
                builder.build_cartesian_2d((x0.max(1e-12)..x1).log_scale(), y0 - pad..y1 + pad)?
            ),
            XAxis::Linear => finish!(builder.build_cartesian_2d(x0..x1, y0 - pad..y1 + pad)?),
            XAxis::Log2 => {
                // Integer ticks k = log₂ x, labelled with x itself.
                let (k0, k1) = (x0.floor(), x1.ceil().max(x0.floor() + 1.0));
                let mut chart = builder.build_cartesian_2d(k0..k1, y0 - pad..y1 + pad)?;
                chart
                    .configure_mesh()
                    .x_desc(x_label)
                    .y_desc(y_label)
                    .x_labels((k1 - k0) as usize + 1)
                    .x_label_formatter(&|k| format!("{}", 2f64.powf(k.round())))
                    .label_style(("sans-serif", 15))
                    .draw()?;
                finish!(@lines chart);
            }
        }
        if legend_width > 0 {
            for (i, s) in series.iter().enumerate() {
                let y = 64 + 24 * i as i32;
                legend_area.draw(&PathElement::new(vec![(8, y), (36, y)], colors(i)))?;
                legend_area.draw(&Text::new(
                    s.name.clone(),
                    (44, y - 8),
                    ("sans-serif", 15).into_font(),
                ))?;
            }
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("plot {}: {e}", path.display()))
}

/// Draws `values` (`rows × columns`, in `[0, max]`) as a grey-scale heatmap into a PNG at
/// `path`, with one label per row (left) and per column (bottom).
pub fn heatmap(
    path: &Path,
    title: &str,
    row_labels: &[String],
    column_labels: &[String],
    values: &[Vec<f64>],
) -> Result<(), String> {
    if !font_ready() {
        return Err(format!(
            "no TrueType font found in {FONT_PATHS:?}; skipped {}",
            path.display()
        ));
    }
    let rows = values.len();
    let cols = values.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Err(format!("nothing to plot for {}", path.display()));
    }
    let max = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f64::MIN_POSITIVE, f64::max);
    // Cells fill [0, cols) × [0, rows); the labels sit in the extra column/row at −1.
    let cell = 40u32;
    let size = (
        (80 + cell * (cols as u32 + 1)).max(480),
        80 + cell * (rows as u32 + 1),
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .build_cartesian_2d(-1.0..cols as f64, -1.0..rows as f64)?;
        chart.draw_series(values.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().map(move |(c, &v)| {
                let shade = (255.0 * (1.0 - (v / max).clamp(0.0, 1.0))) as u8;
                let y = (rows - 1 - r) as f64;
                Rectangle::new(
                    [(c as f64, y), (c as f64 + 1.0, y + 1.0)],
                    RGBColor(shade, shade, shade).filled(),
                )
            })
        }))?;
        let style = TextStyle::from(("sans-serif", 16).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        for (r, label) in row_labels.iter().enumerate().take(rows) {
            let y = (rows - 1 - r) as f64 + 0.5;
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (-0.5, y),
                style.clone(),
            )))?;
        }
        for (c, label) in column_labels.iter().enumerate().take(cols) {
            chart.draw_series(std::iter::once(Text::new(
                label.clone(),
                (c as f64 + 0.5, -0.5),
                style.clone(),
            )))?;
        }
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("plot {}: {e}", path.display()))
}

/// Draws labelled points `(x, y, label, group)` into a PNG at `path`: each point as its label
/// in its group's colour, with a legend of `groups` (index = group).
pub fn labelled_points(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, String, usize)],
    groups: &[&str],
) -> Result<(), String> {
    if !font_ready() {
        return Err(format!(
            "no TrueType font found in {FONT_PATHS:?}; skipped {}",
            path.display()
        ));
    }
    if points.is_empty() {
        return Err(format!("nothing to plot for {}", path.display()));
    }
    let span = |f: fn(&(f64, f64, String, usize)) -> f64| {
        let lo = points.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        let pad = 0.08 * (hi - lo).max(1e-9);
        (lo - pad)..(hi + pad)
    };
    let (xs, ys) = (span(|p| p.0), span(|p| p.1));
    let root = BitMapBackend::new(path, (760, 620)).into_drawing_area();
    let draw = || -> Result<(), Box<dyn std::error::Error + '_>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(xs, ys)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .draw()?;
        for (g, name) in groups.iter().enumerate() {
            // Dark, distinct colours (Palette99's third is a pale yellow, unreadable as text).
            const COLORS: [RGBColor; 5] = [
                RGBColor(200, 30, 30),
                RGBColor(30, 130, 30),
                RGBColor(0, 0, 0),
                RGBColor(30, 60, 200),
                RGBColor(150, 60, 170),
            ];
            let color = COLORS[g % COLORS.len()].to_rgba();
            let style = TextStyle::from(("sans-serif", 18).into_font()).color(&color);
            chart
                .draw_series(
                    points
                        .iter()
                        .filter(|p| p.3 == g)
                        .map(|p| Text::new(p.2.clone(), (p.0, p.1), style.clone())),
                )?
                .label(*name)
                .legend(move |(x, y)| Circle::new((x + 6, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    };
    draw().map_err(|e| format!("plot {}: {e}", path.display()))
}
