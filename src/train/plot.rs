//! A PNG of the training curves (loss, top-1, learning rate against the epoch), drawn from
//! metrics.jsonl at the end of a run. Text uses a font embedded in the binary (an ASCII subset of
//! DejaVu Sans, assets/fonts/), so plotting needs no system fonts or fontconfig.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::train::metrics::{read_metrics, EpochMetrics};

/// The family name of the embedded font, registered with plotters by `register_font` (for other
/// pictures drawn with plotters, such as the classifier example's predictions).
pub const FONT: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans-ascii.ttf");
static FONT_REGISTERED: OnceLock<bool> = OnceLock::new();

const WIDTH: u32 = 1500;
const HEIGHT: u32 = 500;
const TRAIN_COLOR: RGBColor = RGBColor(31, 119, 180);
const TEST_COLOR: RGBColor = RGBColor(214, 39, 40);
const LR_COLOR: RGBColor = RGBColor(44, 160, 44);

/// Reads `metrics_jsonl` and writes the curves to `png`.
pub fn plot_metrics_file(metrics_jsonl: &Path, png: &Path, title: &str) -> Result<()> {
    let metrics = read_metrics(metrics_jsonl)?;
    plot_curves(&metrics, png, title)
}

/// Writes a PNG with three panels: train/test loss, train/test top-1, and the learning rate, each
/// against the epoch. Non-finite values (a diverged loss) are left out of the lines.
pub fn plot_curves(metrics: &[EpochMetrics], png: &Path, title: &str) -> Result<()> {
    if metrics.is_empty() {
        bail!("cannot plot {}: no epochs recorded", png.display());
    }
    register_font()?;
    let mut pixels = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    draw(metrics, title, &mut pixels).with_context(|| format!("cannot plot {}", png.display()))?;
    let image = image::RgbImage::from_raw(WIDTH, HEIGHT, pixels)
        .ok_or_else(|| anyhow!("plot buffer has the wrong size"))?;
    let mut encoded = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut encoded),
            image::ImageFormat::Png,
        )
        .context("cannot encode the plot as PNG")?;
    crate::train::checkpoint::write_atomic(png, &encoded)
}

/// Registers the embedded font with plotters as `FONT` (once per process).
pub fn register_font() -> Result<()> {
    let ok = *FONT_REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_ok()
    });
    if !ok {
        bail!("the embedded plot font is not a valid TrueType font");
    }
    Ok(())
}

/// Maps plotters' errors (generic over the backend) into anyhow.
fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting failed: {e:?}")
}

struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

fn series(
    label: String,
    color: RGBColor,
    metrics: &[EpochMetrics],
    f: impl Fn(&EpochMetrics) -> f64,
) -> Series {
    Series {
        label,
        color,
        points: metrics
            .iter()
            .map(|m| (m.epoch as f64, f(m)))
            .filter(|(_, y)| y.is_finite())
            .collect(),
    }
}

fn draw(metrics: &[EpochMetrics], title: &str, pixels: &mut [u8]) -> Result<()> {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let root = root
        .titled(title, (FONT, 24).into_font())
        .map_err(plot_err)?;
    let panels = root.split_evenly((1, 3));

    let best = metrics
        .iter()
        .map(|m| m.test_top1)
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max);
    let best_label = if best.is_finite() {
        format!("test (best {best:.2}%)")
    } else {
        "test".to_string()
    };

    panel(
        &panels[0],
        metrics,
        "loss",
        "cross-entropy",
        &[
            series("train".into(), TRAIN_COLOR, metrics, |m| m.train_loss),
            series("test".into(), TEST_COLOR, metrics, |m| m.test_loss),
        ],
        SeriesLabelPosition::UpperRight,
        None,
    )?;
    panel(
        &panels[1],
        metrics,
        "top-1 accuracy",
        "percent",
        &[
            series("train".into(), TRAIN_COLOR, metrics, |m| m.train_top1),
            series(best_label, TEST_COLOR, metrics, |m| m.test_top1),
        ],
        SeriesLabelPosition::LowerRight,
        Some(0.0..100.0),
    )?;
    panel(
        &panels[2],
        metrics,
        "learning rate",
        "lr",
        &[series("lr".into(), LR_COLOR, metrics, |m| m.lr)],
        SeriesLabelPosition::UpperRight,
        Some(0.0..f64::INFINITY),
    )?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One chart, its legend where the curves usually are not (losses fall, accuracies rise).
/// `clamp` bounds the automatic y range (accuracy stays within 0..100, the learning
/// rate above 0).
fn panel(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    metrics: &[EpochMetrics],
    caption: &str,
    y_desc: &str,
    lines: &[Series],
    legend_at: SeriesLabelPosition,
    clamp: Option<Range<f64>>,
) -> Result<()> {
    let first = metrics.first().map_or(0, |m| m.epoch) as f64;
    let last = metrics.last().map_or(0, |m| m.epoch) as f64;
    let x_range = first..(last.max(first + 1.0));
    let y_range = y_range(lines, clamp);
    let y_span = y_range.end - y_range.start;

    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 20).into_font())
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range.clone(), y_range)
        .map_err(plot_err)?;
    let x_span = x_range.end - x_range.start;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(y_desc)
        .axis_desc_style((FONT, 16).into_font())
        .label_style((FONT, 14).into_font())
        // Epochs are whole numbers: no more ticks than epochs, and no fractional ones.
        .x_labels((x_span as usize + 1).min(8))
        .y_labels(8)
        .x_label_formatter(&|x| {
            if x.fract() == 0.0 {
                format!("{x}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| tick_label(*y, y_span))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(plot_err)?;

    // Markers make short runs (a handful of epochs) readable; on long runs they, and thick lines,
    // would blot the curves.
    let markers = metrics.len() <= 40;
    let width = if metrics.len() <= 150 { 2 } else { 1 };
    for s in lines {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(plot_err)?
            .label(s.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        if markers {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(plot_err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(legend_at)
        .label_font((FONT, 14).into_font())
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(plot_err)?;
    Ok(())
}

/// The y range covering every finite point with a 5% margin, cut to `clamp`.
fn y_range(lines: &[Series], clamp: Option<Range<f64>>) -> Range<f64> {
    let (mut lo, mut hi) = lines
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), y| {
            (lo.min(y), hi.max(y))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else {
        0.05 * hi.abs().max(1e-3)
    };
    (lo, hi) = (lo - pad, hi + pad);
    if let Some(c) = clamp {
        (lo, hi) = (lo.max(c.start), hi.min(c.end));
    }
    lo..hi
}

/// Tick labels with as many decimals as the axis span needs ("0.05", "12", "3.5e-4").
fn tick_label(v: f64, span: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if span < 1e-3 || v.abs() < 1e-3 {
        return format!("{v:.1e}");
    }
    let decimals = (-(span / 5.0).log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}
