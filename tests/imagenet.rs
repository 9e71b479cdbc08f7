//! The streaming ImageNet loader: torchvision's RandomResizedCrop transcribed against ours, the
//! resampling against an f64 reference and against Pillow (tests/fixtures/imagenet, made by
//! tools/make-imagenet-fixtures.py), decoding of greyscale, CMYK and mislabelled PNG files, every
//! bad input, batches independent of the thread count and exact on resume, corrupt files skipped
//! deterministically, and a few training steps on the software adapter.
mod common;
mod temp_files;

use rbnn::data::decode::{decode_rgb, Rgb8};
use rbnn::data::facts::{IMAGENET_MEAN, IMAGENET_STD};
use rbnn::data::imagenet::{ImageNet, SampleScratch};
use rbnn::data::stream::transform_for;
use rbnn::data::synth::{encode_jpeg, photo};
use rbnn::data::transform::{
    random_resized_crop, resample_normalise, resized_size, round_half_even, AxisWeights, Normalise,
    ResampleScratch, Transform, RRC_RATIO, RRC_SCALE,
};
use rbnn::data::{open, Batch, BatchPlan, Batcher, DatasetKind, Source, Split};
use rbnn::rng::Rng;
use rbnn::train::run_dir::{Existing, RunDir};
use std::path::Path;
use temp_files::{assert_mentions, TempDir};

fn fixture(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/imagenet")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A fixture PNG's RGB pixels (lossless: every decoder agrees).
fn fixture_rgb(name: &str) -> Rgb8 {
    let img = image::load_from_memory(&fixture(name)).unwrap().into_rgb8();
    Rgb8 {
        width: img.width() as usize,
        height: img.height() as usize,
        rgb: img.into_raw(),
    }
}

/// A synthetic photo as a JPEG (quality 90).
fn jpeg(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let rgb = photo(width, height, [0.0; 3], &mut Rng::new(seed));
    encode_jpeg(&rgb, width, height, 90).unwrap()
}

fn png(width: usize, height: usize, seed: u64) -> Vec<u8> {
    let rgb = photo(width, height, [10.0, -10.0, 0.0], &mut Rng::new(seed));
    let img = image::RgbImage::from_raw(width as u32, height as u32, rgb).unwrap();
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .unwrap();
    bytes
}

fn error_of<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            eprintln!("MSG: {e:#}");
            format!("{e:#}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RandomResizedCrop: torchvision's get_params, transcribed line by line from
// torchvision/transforms/transforms.py (RandomResizedCrop.get_params), the draws taken from our
// generator in torch's order: uniform_(scale), uniform_(log_ratio), then randint for i and j.

/// Python's round() on floats (halves to even), written independently of the library's.
fn py_round(x: f64) -> i64 {
    let f = x.floor();
    let d = x - f;
    let f = f as i64;
    if d > 0.5 || (d == 0.5 && f % 2 != 0) {
        f + 1
    } else {
        f
    }
}

fn torchvision_get_params(
    height: i64,
    width: i64,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut Rng,
) -> (i64, i64, i64, i64) {
    let area = (height * width) as f64;
    let log_ratio = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * rng.range(scale.0, scale.1);
        let aspect_ratio = rng.range(log_ratio.0, log_ratio.1).exp();
        let w = py_round((target_area * aspect_ratio).sqrt());
        let h = py_round((target_area / aspect_ratio).sqrt());
        if 0 < w && w <= width && 0 < h && h <= height {
            let i = rng.below((height - h + 1) as usize) as i64;
            let j = rng.below((width - w + 1) as usize) as i64;
            return (i, j, h, w);
        }
    }
    // Fallback to central crop
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (width, py_round(width as f64 / ratio.0.min(ratio.1)))
    } else if in_ratio > ratio.0.max(ratio.1) {
        (py_round(height as f64 * ratio.0.max(ratio.1)), height)
    } else {
        (width, height)
    };
    let i = (height - h).div_euclid(2);
    let j = (width - w).div_euclid(2);
    (i, j, h, w)
}

#[test]
fn random_resized_crop_is_torchvisions_algorithm() {
    assert_eq!(
        [0.5, 1.5, 2.5, -0.5, -1.5, 2.4, 2.6, 3.0].map(round_half_even),
        [0.0, 2.0, 2.0, -0.0, -2.0, 2.0, 3.0, 3.0]
    );
    let sizes = [
        (350, 400),
        (375, 500),
        (500, 333),
        (224, 224),
        (1, 1),
        (2, 3),
        (17, 900),
        (900, 17),
        (10, 1000),
        (1000, 10),
        (100, 76),
        (76, 100),
    ];
    let mut fallbacks = 0;
    for (k, &(h, w)) in sizes.iter().enumerate() {
        for seed in 0..300u64 {
            let seed = seed * 31 + k as u64;
            let got = random_resized_crop(h, w, RRC_SCALE, RRC_RATIO, &mut Rng::new(seed));
            let want = torchvision_get_params(
                h as i64,
                w as i64,
                RRC_SCALE,
                RRC_RATIO,
                &mut Rng::new(seed),
            );
            assert_eq!(
                (
                    got.top as i64,
                    got.left as i64,
                    got.height as i64,
                    got.width as i64
                ),
                want,
                "{h}x{w} seed {seed}"
            );
            assert!(got.top + got.height <= h && got.left + got.width <= w);
            assert!(got.height > 0 && got.width > 0);
            // The fallback takes the central crop; count how often the draws gave up.
            let mut rng = Rng::new(seed);
            let mut drew = false;
            for _ in 0..10 {
                let ta = (h * w) as f64 * rng.range(RRC_SCALE.0, RRC_SCALE.1);
                let ar = rng.range(RRC_RATIO.0.ln(), RRC_RATIO.1.ln()).exp();
                let (cw, ch) = (py_round((ta * ar).sqrt()), py_round((ta / ar).sqrt()));
                if 0 < cw && cw <= w as i64 && 0 < ch && ch <= h as i64 {
                    drew = true;
                    break;
                }
            }
            fallbacks += usize::from(!drew);
        }
    }
    assert!(fallbacks > 600, "the fallback ran {fallbacks} times");
    // The fallback by hand: a 10x1000 strip has no crop of scale >= 0.08 and ratio <= 4/3, so
    // it takes the full height and round(10 * 4/3) = 13 columns in the middle.
    let strip = random_resized_crop(10, 1000, RRC_SCALE, RRC_RATIO, &mut Rng::new(1));
    assert_eq!(
        (strip.top, strip.left, strip.height, strip.width),
        (0, 493, 10, 13)
    );
    let tall = random_resized_crop(1000, 10, RRC_SCALE, RRC_RATIO, &mut Rng::new(1));
    assert_eq!(
        (tall.top, tall.left, tall.height, tall.width),
        (493, 0, 13, 10)
    );
}

#[test]
fn resize_geometry_is_torchvisions() {
    // Resize(256): the shorter side becomes 256, the longer int(256 * long / short).
    assert_eq!(resized_size(375, 500, 256), (256, 341));
    assert_eq!(resized_size(500, 375, 256), (341, 256));
    assert_eq!(resized_size(333, 500, 256), (256, 384));
    assert_eq!(resized_size(300, 300, 256), (256, 256));
    assert_eq!(resized_size(1, 3000, 256), (256, 768_000));
    // CenterCrop(224) of 256x341: top round(16) = 16, left round(58.5) = 58 (halves to even).
    assert_eq!(rbnn::data::transform::center_crop(256, 341, 224), (16, 58));
    assert_eq!(rbnn::data::transform::center_crop(256, 343, 224), (16, 60));
    assert_eq!(rbnn::data::imagenet::resize_for_crop(224), 256);
    assert_eq!(rbnn::data::imagenet::resize_for_crop(64), 73);
}

// ---------------------------------------------------------------------------------------------
// Resampling: against an f64 reference of PIL's bilinear filter, and against Pillow itself.

/// The weights of PIL's antialiased bilinear resize of a span of `len` source pixels onto `out`
/// pixels, in f64: output o at centre (o + 0.5) * len / out reads every source pixel s with the
/// triangle weight max(0, 1 - |s + 0.5 - centre| / f), f = max(len / out, 1), normalised.
fn reference_weights(len: usize, out: usize) -> Vec<Vec<f64>> {
    let scale = len as f64 / out as f64;
    let f = scale.max(1.0);
    (0..out)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let w: Vec<f64> = (0..len)
                .map(|s| (1.0 - ((s as f64 + 0.5 - centre) / f).abs()).max(0.0))
                .collect();
            let total: f64 = w.iter().sum();
            w.iter().map(|v| v / total).collect()
        })
        .collect()
}

/// The reference of a crop (top, left, height, width) of `src` resized to a `resized_h` x
/// `resized_w` picture, of which the window (first_y, first_x, out_h, out_w) is kept, flipped
/// when asked, in grey levels: [3][out_h][out_w].
#[allow(clippy::too_many_arguments)]
fn reference_resample(
    src: &Rgb8,
    (top, left, height, width): (usize, usize, usize, usize),
    (resized_h, resized_w): (usize, usize),
    (first_y, first_x, out_h, out_w): (usize, usize, usize, usize),
    flip: bool,
) -> Vec<f64> {
    let wy = reference_weights(height, resized_h);
    let wx = reference_weights(width, resized_w);
    let mut out = vec![0f64; 3 * out_h * out_w];
    for y in 0..out_h {
        for x in 0..out_w {
            let ox = if flip {
                first_x + out_w - 1 - x
            } else {
                first_x + x
            };
            for c in 0..3 {
                let mut v = 0.0;
                for (i, &a) in wy[first_y + y].iter().enumerate() {
                    if a == 0.0 {
                        continue;
                    }
                    for (j, &b) in wx[ox].iter().enumerate() {
                        if b != 0.0 {
                            let p = src.rgb[((top + i) * src.width + left + j) * 3 + c];
                            v += a * b * p as f64;
                        }
                    }
                }
                out[(c * out_h + y) * out_w + x] = v;
            }
        }
    }
    out
}

/// ToTensor + Normalize of planar [3][..] grey levels with ImageNet's mean and std, in f64.
fn normalised(grey: &[f64]) -> Vec<f64> {
    let plane = grey.len() / 3;
    grey.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / plane;
            (v / 255.0 - IMAGENET_MEAN[c] as f64) / IMAGENET_STD[c] as f64
        })
        .collect()
}

/// Mean/std that make the resampler's output the resampled grey level itself.
const GREY_MEAN: [f32; 3] = [0.0; 3];
const GREY_STD: [f32; 3] = [1.0 / 255.0; 3];

fn resample(
    src: &Rgb8,
    ys: &AxisWeights,
    xs: &AxisWeights,
    mean: &[f32; 3],
    std: &[f32; 3],
) -> Vec<f32> {
    let mut out = vec![f32::NAN; 3 * ys.start.len() * xs.start.len()];
    resample_normalise(
        &src.rgb,
        src.width,
        ys,
        xs,
        &Normalise::new(mean, std),
        &mut ResampleScratch::default(),
        &mut out,
    );
    out
}

fn max_abs_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w).abs())
        .fold(0.0, f64::max)
}

#[test]
fn resampling_matches_an_f64_reference() {
    let src = {
        let (w, h) = (53, 41);
        Rgb8 {
            width: w,
            height: h,
            rgb: photo(w, h, [0.0; 3], &mut Rng::new(3)),
        }
    };
    // (crop box, resized size, kept window, flip): shrinking, enlarging, both at once, odd
    // sizes, a 1-pixel crop, a resize then a centre window (the validation transform), flips.
    let cases = [
        ((0, 0, 41, 53), (41, 53), (0, 0, 41, 53), false),
        ((0, 0, 41, 53), (17, 23), (0, 0, 17, 23), false),
        ((3, 5, 30, 40), (24, 24), (0, 0, 24, 24), true),
        ((10, 7, 9, 13), (32, 32), (0, 0, 32, 32), false),
        ((0, 0, 41, 53), (7, 90), (0, 0, 7, 90), true),
        ((20, 30, 1, 1), (5, 5), (0, 0, 5, 5), false),
        ((0, 0, 41, 53), (29, 37), (3, 6, 22, 22), false),
        ((0, 0, 41, 53), (70, 90), (12, 30, 45, 45), false),
        ((0, 0, 41, 53), (41, 3), (0, 0, 41, 3), true),
    ];
    for (crop, resized, window, flip) in cases {
        let (top, left, height, width) = crop;
        let (first_y, first_x, out_h, out_w) = window;
        let ys = AxisWeights::bilinear(top, height, resized.0, first_y, out_h, false);
        let xs = AxisWeights::bilinear(left, width, resized.1, first_x, out_w, flip);
        let want = reference_resample(&src, crop, resized, window, flip);
        let got = resample(&src, &ys, &xs, &GREY_MEAN, &GREY_STD);
        let err = max_abs_diff(&got, &want);
        assert!(
            err < 2e-3,
            "{crop:?} -> {resized:?} {window:?} flip {flip}: error {err}"
        );
        // Normalised with ImageNet's mean/std: (v / 255 - mean) / std.
        let got = resample(&src, &ys, &xs, &IMAGENET_MEAN, &IMAGENET_STD);
        let want = normalised(&want);
        let err = max_abs_diff(&got, &want);
        assert!(err < 1e-5, "normalised {crop:?}: error {err}");
    }
}

#[test]
fn resampling_matches_pillow() {
    let src = fixture_rgb("resize-src.png");
    let (h, w) = (src.height, src.width);
    // (Pillow's output, crop box, size): Image.resize(size, BILINEAR), and torchvision's
    // resized_crop = crop((5, 7, 45, 37)) then resize((24, 24)).
    for (name, (top, left, ch, cw)) in [
        ("resize-down.png", (0, 0, h, w)),
        ("resize-up.png", (0, 0, h, w)),
        ("resize-crop.png", (7, 5, 30, 40)),
    ] {
        let pillow = fixture_rgb(name);
        let (oh, ow) = (pillow.height, pillow.width);
        let ys = AxisWeights::bilinear(top, ch, oh, 0, oh, false);
        let xs = AxisWeights::bilinear(left, cw, ow, 0, ow, false);
        let got = resample(&src, &ys, &xs, &GREY_MEAN, &GREY_STD);
        let plane = oh * ow;
        let mut worst = 0f32;
        for (i, px) in pillow.rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                worst = worst.max((got[c * plane + i] - px[c] as f32).abs());
            }
        }
        // Pillow rounds its 22-bit fixed-point result (and the intermediate of a two-pass
        // resize) to 8 bits; we keep f32.
        eprintln!("{name}: largest difference from Pillow {worst} grey levels");
        assert!(
            worst <= 1.01,
            "{name}: differs from Pillow by {worst} grey levels"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding.

fn decode(bytes: &[u8]) -> anyhow::Result<Rgb8> {
    let mut out = Rgb8::default();
    decode_rgb(bytes, &mut out)?;
    Ok(out)
}

fn worst_difference(a: &Rgb8, b: &Rgb8) -> u8 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.rgb
        .iter()
        .zip(&b.rgb)
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap()
}

#[test]
fn greyscale_cmyk_and_png_decode_as_pillow_does() {
    // JPEG decoders may differ by a level or two (IDCT and upsampling rounding).
    let cmyk = decode(&fixture("cmyk.jpg")).unwrap();
    let d = worst_difference(&cmyk, &fixture_rgb("cmyk-pillow.png"));
    eprintln!("CMYK: largest difference from Pillow {d}");
    assert!(d <= 3, "CMYK differs from Pillow by {d}");
    let grey = decode(&fixture("grey.jpg")).unwrap();
    let d = worst_difference(&grey, &fixture_rgb("grey-pillow.png"));
    eprintln!("greyscale: largest difference from Pillow {d}");
    assert!(d <= 2, "greyscale differs from Pillow by {d}");
    assert!(grey
        .rgb
        .chunks_exact(3)
        .all(|p| p[0] == p[1] && p[1] == p[2]));
    // A PNG (whatever its name) decodes exactly.
    let bytes = png(31, 17, 4);
    let want = image::load_from_memory(&bytes).unwrap().into_rgb8();
    let got = decode(&bytes).unwrap();
    assert_eq!((got.width, got.height), (31, 17));
    assert_eq!(got.rgb, want.into_raw());
    // A baseline JPEG agrees with the image crate's decoder.
    let bytes = jpeg(45, 38, 5);
    let want = image::load_from_memory(&bytes).unwrap().into_rgb8();
    let want = Rgb8 {
        width: 45,
        height: 38,
        rgb: want.into_raw(),
    };
    assert!(worst_difference(&decode(&bytes).unwrap(), &want) <= 1);
}

#[test]
fn corrupt_and_truncated_files_are_errors() {
    let good = jpeg(64, 48, 6);
    let truncated = &good[..good.len() * 2 / 3];
    assert_mentions(&error_of(decode(truncated)), &["truncated JPEG"]);
    // Cut right after the headers, or inside them.
    assert!(decode(&good[..700]).is_err());
    assert!(decode(&good[..20]).is_err());
    assert!(decode(&[]).is_err());
    assert_mentions(
        &error_of(decode(b"this is not a picture at all")),
        &["not a readable image"],
    );
    let mut header = good.clone();
    header[2..60].fill(0);
    assert!(decode(&header).is_err());
    // Damage inside the scan data decodes, as in libjpeg and PIL (a glitch, not an error).
    let mut middle = good.clone();
    let n = middle.len();
    for b in &mut middle[n / 2..n / 2 + 16] {
        *b = b.wrapping_add(77);
    }
    let _ = decode(&middle);
}

// ---------------------------------------------------------------------------------------------
// The folder.

/// train/: n01 (5 colour JPEGs of various sizes), n02 (greyscale, CMYK, a PNG named .JPEG, 2
/// JPEGs), n03 (4 JPEGs); val/: n01 and n03 (2 each), no n02.
fn small_imagenet(dir: &TempDir) {
    let sizes = [(90, 70), (50, 120), (200, 40), (64, 64), (33, 47)];
    for (k, &(w, h)) in sizes.iter().enumerate() {
        dir.write(&format!("train/n01/a{k}.JPEG"), &jpeg(w, h, k as u64));
    }
    dir.write("train/n02/grey.JPEG", &fixture("grey.jpg"));
    dir.write("train/n02/cmyk.JPEG", &fixture("cmyk.jpg"));
    dir.write("train/n02/really_a_png.JPEG", &png(70, 52, 8));
    dir.write("train/n02/z0.jpeg", &jpeg(80, 60, 9));
    dir.write("train/n02/z1.JPG", &jpeg(61, 75, 10));
    for k in 0..4 {
        dir.write(
            &format!("train/n03/c{k}.JPEG"),
            &jpeg(72 + k * 9, 66, 20 + k as u64),
        );
    }
    dir.write("train/n03/notes.txt", b"not a picture");
    dir.write("train/n03/.hidden.JPEG", b"skipped");
    for k in 0..2 {
        dir.write(
            &format!("val/n01/v{k}.JPEG"),
            &jpeg(100, 80 + k * 5, 30 + k as u64),
        );
        dir.write(&format!("val/n03/v{k}.JPEG"), &jpeg(77, 99, 40 + k as u64));
    }
}

#[test]
fn the_folder_is_listed_as_imagefolder_does() {
    let dir = TempDir::new("layout");
    small_imagenet(&dir);
    let train = ImageNet::open(dir.path(), Split::Train, 32).unwrap();
    assert_eq!(train.classes, ["n01", "n02", "n03"]);
    assert_eq!(train.len(), 14);
    let labels: Vec<u32> = (0..train.len()).map(|i| train.label(i)).collect();
    assert_eq!(labels, [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    let names: Vec<String> = (0..train.len())
        .map(|i| {
            train
                .file(i)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        names[5..10],
        [
            "cmyk.JPEG",
            "grey.JPEG",
            "really_a_png.JPEG",
            "z0.jpeg",
            "z1.JPG"
        ]
    );
    assert_eq!(train.image_shape(), [3, 32, 32]);
    // Validation without n02: labels keep the training indices.
    let val = ImageNet::open(dir.path(), Split::Test, 32).unwrap();
    assert_eq!(val.classes, train.classes);
    let labels: Vec<u32> = (0..val.len()).map(|i| val.label(i)).collect();
    assert_eq!(labels, [0, 0, 2, 2]);
    // Every file decodes and transforms (greyscale, CMYK and the PNG among them).
    let mut scratch = SampleScratch::default();
    let mut out = vec![0f32; 3 * 32 * 32];
    for i in 0..train.len() {
        for t in [train.train_transform, train.eval_transform] {
            train
                .write_file(i, &t, &Rng::new(i as u64), &mut scratch, &mut out)
                .unwrap();
            assert!(out.iter().all(|v| v.is_finite() && v.abs() < 3.0));
        }
    }
    // A cut to n files keeps every class.
    let cut = ImageNet::open(dir.path(), Split::Train, 32)
        .unwrap()
        .take(4);
    let labels: Vec<u32> = (0..cut.len()).map(|i| cut.label(i)).collect();
    assert_eq!(labels, [0, 0, 1, 2]);
    // Through the dataset kinds.
    assert_eq!(
        "imagenet".parse::<DatasetKind>().unwrap(),
        DatasetKind::ImageNet { crop: 224 }
    );
    assert_eq!(
        "imagenet:64".parse::<DatasetKind>().unwrap().to_string(),
        "imagenet:64"
    );
    assert_eq!(
        "imagenet".parse::<DatasetKind>().unwrap().to_string(),
        "imagenet"
    );
    let source = open(
        DatasetKind::ImageNet { crop: 40 },
        Some(dir.path()),
        Split::Test,
        None,
    )
    .unwrap();
    assert_eq!((source.len(), source.image_shape()), (4, [3, 40, 40]));
    assert_mentions(
        &error_of(rbnn::data::load(
            DatasetKind::ImageNet { crop: 224 },
            Some(dir.path()),
            Split::Train,
        )),
        &["streamed"],
    );
}

#[test]
fn bad_folders_are_errors_naming_the_folder() {
    let empty_class = TempDir::new("empty-class");
    small_imagenet(&empty_class);
    std::fs::create_dir_all(empty_class.path().join("train/n04")).unwrap();
    empty_class.write("train/n04/readme.txt", b"no pictures here");
    let msg = error_of(ImageNet::open(empty_class.path(), Split::Train, 32));
    assert_mentions(&msg, &["n04", "is empty"]);

    let stray = TempDir::new("val-only-class");
    small_imagenet(&stray);
    stray.write("val/n09/x.JPEG", &jpeg(20, 20, 1));
    let msg = error_of(ImageNet::open(stray.path(), Split::Test, 32));
    assert_mentions(&msg, &["val/n09", "not a class of", "train"]);

    let none = TempDir::new("no-splits");
    none.write("n01/x.JPEG", &jpeg(20, 20, 1));
    let msg = error_of(ImageNet::open(none.path(), Split::Train, 32));
    assert_mentions(&msg, &["neither train/ nor val/"]);

    let no_val = TempDir::new("no-val");
    no_val.write("train/n01/x.JPEG", &jpeg(20, 20, 1));
    let msg = error_of(ImageNet::open(no_val.path(), Split::Test, 32));
    assert_mentions(&msg, &["missing folder", "val"]);

    let msg = error_of(ImageNet::open(
        Path::new("/nonexistent/imagenet"),
        Split::Train,
        32,
    ));
    assert_mentions(&msg, &["/nonexistent/imagenet"]);
    let msg = error_of(open(
        DatasetKind::ImageNet { crop: 224 },
        None,
        Split::Train,
        None,
    ));
    assert_mentions(&msg, &["--data-path"]);
}

#[test]
fn a_file_that_does_not_decode_is_an_error_naming_it() {
    let dir = TempDir::new("bad-file");
    small_imagenet(&dir);
    let good = jpeg(64, 48, 6);
    dir.write("train/n03/c1.JPEG", &good[..good.len() / 2]);
    dir.write("train/n03/c2.JPEG", b"");
    let train = ImageNet::open(dir.path(), Split::Train, 32).unwrap();
    let mut scratch = SampleScratch::default();
    let mut out = vec![0f32; 3 * 32 * 32];
    for (i, what) in [(11, "truncated JPEG"), (12, "not a readable image")] {
        let msg = error_of(train.write_file(
            i,
            &train.eval_transform,
            &Rng::new(0),
            &mut scratch,
            &mut out,
        ));
        assert_mentions(&msg, &["train/n03/c", what]);
    }
}

// ---------------------------------------------------------------------------------------------
// Batches.

fn stream(dir: &Path, split: Split, crop: usize) -> Source {
    ImageNet::open(dir, split, crop).unwrap().into()
}

fn batches(source: &Source, plan: BatchPlan, epochs: std::ops::Range<usize>) -> Vec<Batch> {
    let mut b = Batcher::new(source.clone(), plan, epochs).unwrap();
    let out: Vec<Batch> = b.by_ref().collect();
    b.finished().unwrap();
    out
}

/// Sample `i` as `write_file` makes it with `rng`.
fn sample(images: &ImageNet, i: usize, t: &Transform, rng: &Rng) -> Vec<f32> {
    let s = images.image_shape();
    let mut out = vec![0f32; s.iter().product()];
    images
        .write_file(i, t, rng, &mut SampleScratch::default(), &mut out)
        .unwrap();
    out
}

#[test]
fn batches_do_not_depend_on_threads_and_resume_exactly() {
    let dir = TempDir::new("determinism");
    small_imagenet(&dir);
    let source = stream(dir.path(), Split::Train, 24);
    let plan = BatchPlan {
        threads: 1,
        ..BatchPlan::train_source(&source, 4, 11)
    };
    let one = batches(&source, plan, 0..3);
    let three = batches(
        &source,
        BatchPlan {
            threads: 3,
            prefetch: 1,
            ..plan
        },
        0..3,
    );
    assert_eq!(one.len(), 3 * 4);
    assert!(one == three, "the batches depend on the thread count");
    let resumed = batches(&source, BatchPlan { threads: 2, ..plan }, 2..3);
    assert!(resumed[..] == one[8..], "a resumed run sees other batches");

    let Source::Stream(images) = &source else {
        unreachable!()
    };
    let transform = transform_for(images, plan.augment);
    assert_eq!(
        transform,
        Transform::Train {
            crop: 24,
            hflip: true
        }
    );
    for (k, batch) in one.iter().enumerate() {
        let epoch = k / 4;
        assert_eq!((batch.epoch, batch.index, batch.skipped), (epoch, k % 4, 0));
        assert_eq!(batch.images.len(), batch.len() * 3 * 24 * 24);
        for (j, &i) in batch.indices.iter().enumerate() {
            assert_eq!(batch.labels[j], images.label(i as usize));
            let want = sample(images, i as usize, &transform, &plan.sample_rng(epoch, i));
            assert!(batch.images[j * want.len()..(j + 1) * want.len()] == want[..]);
        }
    }
    // A train sample is torchvision's crop box, flip and resize of the decoded picture.
    let i = one[0].indices[0] as usize;
    let mut rng = plan.sample_rng(0, i as u32);
    let mut pixels = Rgb8::default();
    decode_rgb(&std::fs::read(images.file(i)).unwrap(), &mut pixels).unwrap();
    let (t, l, h, w) = torchvision_get_params(
        pixels.height as i64,
        pixels.width as i64,
        RRC_SCALE,
        RRC_RATIO,
        &mut rng,
    );
    let flip = rng.uniform() < 0.5;
    let want = reference_resample(
        &pixels,
        (t as usize, l as usize, h as usize, w as usize),
        (24, 24),
        (0, 0, 24, 24),
        flip,
    );
    assert!(max_abs_diff(&one[0].images[..3 * 576], &normalised(&want)) < 1e-4);
    // Different epochs draw differently.
    assert_ne!(one[0].indices, one[4].indices);

    // Validation: dataset order, resize then centre crop, the last batch partial.
    let val = stream(dir.path(), Split::Test, 24);
    let Source::Stream(val_images) = &val else {
        unreachable!()
    };
    let got = batches(
        &val,
        BatchPlan {
            threads: 2,
            ..BatchPlan::eval(3)
        },
        0..1,
    );
    assert_eq!(got.iter().map(|b| b.len()).collect::<Vec<_>>(), [3, 1]);
    let order: Vec<u32> = got.iter().flat_map(|b| b.indices.clone()).collect();
    assert_eq!(order, [0, 1, 2, 3]);
    let eval = val_images.eval_transform;
    assert_eq!(
        eval,
        Transform::Eval {
            crop: 24,
            resize: 27
        }
    );
    let want = sample(val_images, 3, &eval, &Rng::new(0));
    assert!(got[1].images == want);
    // Against the reference: resize the shorter side to 27, centre crop 24.
    let mut pixels = Rgb8::default();
    decode_rgb(&std::fs::read(val_images.file(3)).unwrap(), &mut pixels).unwrap();
    let (rh, rw) = resized_size(pixels.height, pixels.width, 27);
    let (top, left) = rbnn::data::transform::center_crop(rh, rw, 24);
    let reference = reference_resample(
        &pixels,
        (0, 0, pixels.height, pixels.width),
        (rh, rw),
        (top, left, 24, 24),
        false,
    );
    assert!(max_abs_diff(&want, &normalised(&reference)) < 1e-4);
}

#[test]
fn an_unreadable_file_is_replaced_deterministically_and_counted() {
    let dir = TempDir::new("skip");
    small_imagenet(&dir);
    let good = jpeg(64, 48, 6);
    // c1 of class n03 (file 11) is cut short.
    dir.write("train/n03/c1.JPEG", &good[..good.len() / 2]);
    let source = stream(dir.path(), Split::Train, 16);
    let plan = BatchPlan {
        threads: 1,
        ..BatchPlan::train_source(&source, 5, 3)
    };
    let one = batches(&source, plan, 0..2);
    let fresh = stream(dir.path(), Split::Train, 16);
    let two = batches(&fresh, BatchPlan { threads: 2, ..plan }, 0..2);
    assert!(one == two, "replacements depend on the thread count");
    for epoch in 0..2 {
        let skipped: usize = one[epoch * 3..(epoch + 1) * 3]
            .iter()
            .map(|b| b.skipped)
            .sum();
        assert_eq!(skipped, 1, "epoch {epoch}");
    }
    // The replacement is the next file of its class (c2), with the draws of sample 11.
    let Source::Stream(images) = &source else {
        unreachable!()
    };
    let transform = transform_for(images, plan.augment);
    let (b, j) = one[..3]
        .iter()
        .enumerate()
        .find_map(|(b, batch)| batch.indices.iter().position(|&i| i == 11).map(|j| (b, j)))
        .unwrap();
    let want = sample(images, 12, &transform, &plan.sample_rng(0, 11));
    assert!(one[b].images[j * want.len()..(j + 1) * want.len()] == want[..]);
    assert_eq!(one[b].labels[j], 2);

    // A class none of whose files can be read stops the batches with an error naming it.
    for k in 0..4 {
        dir.write(&format!("train/n03/c{k}.JPEG"), b"garbage");
    }
    let broken = stream(dir.path(), Split::Train, 16);
    let mut batcher = Batcher::new(broken, BatchPlan { threads: 2, ..plan }, 0..1).unwrap();
    while batcher.next().is_some() {}
    let msg = format!("{:#}", batcher.finished().unwrap_err());
    assert_mentions(&msg, &["no file of class n03", "can be read"]);
}

// ---------------------------------------------------------------------------------------------
// Training on the software adapter.

/// Trains `cfg` for its epoch into `out`; returns the metrics lines.
fn train_one_epoch(
    gpu: &rbnn::gpu::Gpu,
    cfg: &rbnn::train::config::Config,
    out: &Path,
) -> Vec<rbnn::train::metrics::EpochMetrics> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let run = RunDir::open(out, Existing::Refuse).unwrap();
    let summary = rbnn::train::trainer::train(gpu, cfg, &run, None, &stop, false).unwrap();
    assert_eq!(summary.epochs_run, 1);
    rbnn::train::metrics::read_metrics(&out.join("metrics.jsonl")).unwrap()
}

/// `rbnn export` of `checkpoint` to `packed` (model and dataset from its config).
fn export(gpu: &rbnn::gpu::Gpu, checkpoint: &Path, packed: &Path) {
    let opts = rbnn::infer::export::ExportOptions {
        model: None,
        dataset: None,
        data_path: None,
    };
    rbnn::infer::export::export_checkpoint(gpu, checkpoint, packed, &opts).unwrap();
}

#[test]
fn trains_a_few_steps_on_a_streamed_folder() {
    let gpu = gpu_or_skip!();
    let dir = TempDir::new("train");
    small_imagenet(&dir);
    let good = jpeg(64, 48, 6);
    dir.write("train/n03/c1.JPEG", &good[..good.len() / 2]);
    let out = dir.path().join("run");
    let cfg = rbnn::train::config::Config {
        model: "resnet20_1w1a".into(),
        dataset: "imagenet:64".into(),
        data_path: Some(dir.path().to_string_lossy().into_owned()),
        epochs: 1,
        batch_size: 4,
        batch_size_test: 4,
        lr: 0.01,
        seed: 2,
        data_threads: 2,
        ..Default::default()
    };
    let m = train_one_epoch(gpu, &cfg, &out);
    assert_eq!(m.len(), 1);
    assert_eq!(
        (m[0].skipped_train_images, m[0].skipped_test_images),
        (1, 0)
    );
    assert!(m[0].train_loss.is_finite() && m[0].test_loss.is_finite());
    // The checkpoint evaluates on the same folder.
    let last = out.join("last.safetensors");
    let (_, totals) = rbnn::train::trainer::eval_checkpoint(gpu, &last, None).unwrap();
    assert_eq!(totals.samples, 4);
    // Its export scores the streamed validation folder as `rbnn eval` of a packed model does:
    // the same classes (bit-exact logits on the software adapter), the loss summed on the host.
    let packed = dir.path().join("packed.safetensors");
    export(gpu, &last, &packed);
    let data = dir.path().to_string_lossy().into_owned();
    let (_, p) = rbnn::infer::eval::eval_packed(gpu, &packed, None, Some(&data), 4, None).unwrap();
    assert_eq!(p.samples, 4);
    if gpu.is_software() {
        assert_eq!((p.top1, p.top5), (totals.top1, totals.top5));
        assert!((p.loss_sum - totals.loss_sum).abs() <= 1e-5 * totals.loss_sum.abs().max(1.0));
    }
}

/// The paper's resnet18_1w1a_imagenet on the streamed folder at 193x193 (the smallest input its
/// 7x7 average pool takes): two steps of batch 2 (the epoch's rotation update first), the
/// checkpoint evaluated and exported (the packed engine's parity is in tests/infer.rs, its
/// scoring of a streamed folder in trains_a_few_steps_on_a_streamed_folder), and its tensors
/// evaluated as a converted official checkpoint.
#[test]
fn resnet18_imagenet_trains_evaluates_and_exports() {
    let gpu = gpu_or_skip!();
    let dir = TempDir::new("train-r18");
    small_imagenet(&dir);
    let out = dir.path().join("run");
    let cfg = rbnn::train::config::Config {
        model: "resnet18_1w1a_imagenet".into(),
        dataset: "imagenet:193".into(),
        data_path: Some(dir.path().to_string_lossy().into_owned()),
        epochs: 1,
        batch_size: 2,
        batch_size_test: 2,
        max_train_images: Some(4),
        max_test_images: Some(2),
        lr: 0.01,
        seed: 3,
        data_threads: 2,
        ..Default::default()
    };
    let m = train_one_epoch(gpu, &cfg, &out);
    assert!(m[0].train_loss.is_finite() && m[0].test_loss.is_finite());
    let last = out.join("last.safetensors");
    let (_, float) = rbnn::train::trainer::eval_checkpoint(gpu, &last, None).unwrap();
    assert_eq!(float.samples, 2);
    // Export (the float stem and downsamples stay float) and score the packed model.
    let packed = dir.path().join("r18.safetensors");
    export(gpu, &last, &packed);
    let model = rbnn::infer::PackedModel::load(&packed).unwrap();
    assert_eq!(model.meta.input, [3, 193, 193]);
    assert!(model.tensors.contains_key("layer2.0.downsample.0.weight"));
    assert!(model.tensors.contains_key("layer1.0.conv1.sign"));
    assert!(!model.tensors.contains_key("bn3.weight"));

    // The same tensors as tools/convert_official.py writes an official checkpoint (official
    // names, metadata format, model, dataset; no training config): `rbnn eval` with --model and
    // --dataset scores it as the checkpoint.
    use rbnn::train::checkpoint::{read_safetensors, save_atomic, Metadata};
    let (state, _) = read_safetensors(&last).unwrap();
    let converted = dir.path().join("converted.safetensors");
    let metadata: Metadata = [
        ("format", "rbnn-checkpoint"),
        ("format_version", "1"),
        ("model", "resnet18_1w1a_imagenet"),
        ("dataset", "imagenet"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    save_atomic(&converted, &state, &metadata).unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let eval = std::process::Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .args([
            "eval",
            "--model",
            "resnet18_1w1a_imagenet",
            "--dataset",
            "imagenet:193",
        ])
        .args([
            "--max-test-images",
            "2",
            "--batch-size-test",
            "2",
            "--data-path",
            &data,
        ])
        .arg("--checkpoint")
        .arg(&converted)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&eval.stderr)
    );
    // The same numbers as the checkpoint's own evaluation above.
    let line = format!(
        "(2 test images): loss {:.4}, top-1 {:.2}%, top-5 {:.2}%",
        float.mean_loss(),
        100.0 * float.top1_accuracy(),
        100.0 * float.top5_accuracy()
    );
    assert!(text.contains(&line), "{text}\nexpected {line}");
}

// ---------------------------------------------------------------------------------------------
// The command line: the synthetic folder and the loader benchmark.

fn rbnn(args: &[&str], dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_rbnn"))
        .args(args)
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn the_cli_writes_an_imagenet_like_folder_and_benchmarks_the_loader() {
    let dir = TempDir::new("cli");
    let made = rbnn(
        &[
            "make-imagenet-like",
            "--classes",
            "2",
            "--train-per-class",
            "3",
            "--val-per-class",
            "1",
            "--out",
        ],
        dir.path(),
    );
    let text = String::from_utf8_lossy(&made.stdout);
    assert!(
        made.status.success() && text.contains("wrote 8 JPEGs"),
        "{text}"
    );
    let train = ImageNet::open(dir.path(), Split::Train, 224).unwrap();
    assert_eq!((train.len(), train.classes.len()), (6, 2));
    let mut pixels = Rgb8::default();
    for i in 0..train.len() {
        let bytes = std::fs::read(train.file(i)).unwrap();
        decode_rgb(&bytes, &mut pixels).unwrap();
        assert!((300..=500).contains(&pixels.width) && (250..=450).contains(&pixels.height));
        // A photo-like entropy: several bits per pixel at quality 90.
        let bits = bytes.len() as f64 * 8.0 / (pixels.width * pixels.height) as f64;
        assert!((3.0..10.0).contains(&bits), "{bits} bits per pixel");
    }

    let bench = [
        "bench",
        "data",
        "--dataset",
        "imagenet:64",
        "--threads",
        "2",
        "--images",
        "6",
        "--batch",
        "3",
        "--train-rate",
        "1e9",
        "--data-path",
    ];
    let out = rbnn(&bench, dir.path());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("img/s per thread") && text.contains("val "),
        "{text}"
    );
    assert!(
        text.contains("keeps up with training at 1000000000 img/s: no"),
        "{text}"
    );
    let json = [&bench[..12], &["--json", "--data-path"]].concat();
    let out = rbnn(&json, dir.path());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row["images"].as_u64().unwrap() >= 6);
        assert!(row["images_per_second"].as_f64().unwrap() > 0.0);
        assert_eq!(row["threads"].as_u64(), Some(2));
    }
    let wrong = rbnn(
        &["bench", "data", "--dataset", "cifar10", "--data-path"],
        dir.path(),
    );
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("imagenet"));
}
