//! Dataset readers on small synthetic files in the real formats, every bad-input error, the
//! embedded subset, augmentation properties, and batcher determinism and coverage. CPU only.

mod temp_files;

use rbnn::data::augment::{write_sample, CROP_PADDING};
use rbnn::data::{
    load, Augment, BatchPlan, Batcher, Crop, Dataset, DatasetKind, Normalizer, Split,
};
use rbnn::rng::Rng;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use temp_files::{assert_mentions, TempDir};

/// The error message of a load that must fail, with its whole context chain.
fn load_err(kind: DatasetKind, path: Option<&Path>, split: Split) -> String {
    match load(kind, path, split) {
        Ok(ds) => panic!("expected an error, loaded {} ({} images)", ds.name, ds.n),
        Err(e) => {
            eprintln!("MSG: {e:#}");
            format!("{e:#}")
        }
    }
}

/// A recognisable pixel value for (record, position).
fn pixel(record: usize, k: usize) -> u8 {
    ((k * 7 + record * 13) % 256) as u8
}

/// CIFAR records: `label_bytes` then 3072 pixels each.
fn cifar_records(label_bytes: &[&[u8]], first_record: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (r, labels) in label_bytes.iter().enumerate() {
        out.extend_from_slice(labels);
        out.extend((0..3072).map(|k| pixel(first_record + r, k)));
    }
    out
}

fn write_cifar10(dir: &TempDir, sub: &str) {
    // Records 0..=5 over the five training batches, three in the test batch.
    let train: [&[&[u8]]; 5] = [&[&[3], &[9]], &[&[0]], &[&[1]], &[&[2]], &[&[4]]];
    let mut first = 0;
    for (i, recs) in train.iter().enumerate() {
        dir.write(
            &format!("{sub}data_batch_{}.bin", i + 1),
            &cifar_records(recs, first),
        );
        first += recs.len();
    }
    dir.write(
        &format!("{sub}test_batch.bin"),
        &cifar_records(&[&[7], &[8], &[5]], 100),
    );
}

#[test]
fn cifar10_reads_batches_in_order_with_standard_or_file_names() {
    let dir = TempDir::new("cifar10");
    write_cifar10(&dir, "");
    let train = load(DatasetKind::Cifar10, Some(dir.path()), Split::Train).unwrap();
    assert_eq!((train.n, train.c, train.h, train.w), (6, 3, 32, 32));
    assert_eq!(train.labels, vec![3, 9, 0, 1, 2, 4]);
    for r in 0..6 {
        assert!(train
            .image(r)
            .iter()
            .enumerate()
            .all(|(k, &p)| p == pixel(r, k)));
    }
    assert_eq!(train.classes[0], "airplane");
    assert_eq!(train.classes[9], "truck");
    assert_eq!(train.mean, vec![0.485, 0.456, 0.406]);
    assert_eq!(train.std, vec![0.229, 0.224, 0.225]);
    assert!(train.hflip);

    let test = load(DatasetKind::Cifar10, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(test.n, 3);
    assert_eq!(test.labels, vec![7, 8, 5]);
    assert_eq!(test.image(2)[5], pixel(102, 5));

    let names: String = (0..10).map(|i| format!("class{i}\n")).collect();
    dir.write("batches.meta.txt", format!("{names}\n").as_bytes());
    let named = load(DatasetKind::Cifar10, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(named.classes[3], "class3");
}

#[test]
fn cifar10_accepts_the_archive_parent_folder() {
    let dir = TempDir::new("cifar10-parent");
    write_cifar10(&dir, "cifar-10-batches-bin/");
    let test = load(DatasetKind::Cifar10, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(test.labels, vec![7, 8, 5]);
}

#[test]
fn cifar100_uses_the_fine_label() {
    let dir = TempDir::new("cifar100");
    dir.write(
        "train.bin",
        &cifar_records(&[&[19, 99], &[0, 42], &[3, 7]], 0),
    );
    dir.write("test.bin", &cifar_records(&[&[5, 63]], 10));
    let train = load(DatasetKind::Cifar100, Some(dir.path()), Split::Train).unwrap();
    assert_eq!(train.labels, vec![99, 42, 7]);
    assert_eq!(train.classes.len(), 100);
    assert_eq!(train.classes[99], "worm");
    assert_eq!(train.image(1)[3071], pixel(1, 3071));
    let test = load(DatasetKind::Cifar100, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(test.labels, vec![63]);

    let names: String = (0..100).map(|i| format!("fine{i}\n")).collect();
    dir.write("fine_label_names.txt", names.as_bytes());
    let named = load(DatasetKind::Cifar100, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(named.classes[63], "fine63");
}

fn idx_images(n: usize, rows: usize, cols: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for v in [0x803u32, n as u32, rows as u32, cols as u32] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend((0..n * rows * cols).map(|k| (k % 251 + 1) as u8));
    out
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0x801u32.to_be_bytes());
    out.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    out.extend_from_slice(labels);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Checks that a 28x28 IDX image sits in the middle of a zero 32x32 border.
fn assert_padded(ds: &Dataset, i: usize) {
    let img = ds.image(i);
    for y in 0..32 {
        for x in 0..32 {
            let inside = (2..30).contains(&y) && (2..30).contains(&x);
            let want = if inside {
                ((i * 784 + (y - 2) * 28 + (x - 2)) % 251 + 1) as u8
            } else {
                0
            };
            assert_eq!(img[y * 32 + x], want, "image {i} pixel ({y}, {x})");
        }
    }
}

#[test]
fn idx_plain_and_gzipped_are_padded_to_32() {
    let dir = TempDir::new("idx");
    dir.write("train-images-idx3-ubyte", &idx_images(3, 28, 28));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[4, 0, 9]));
    dir.write("t10k-images-idx3-ubyte.gz", &gzip(&idx_images(2, 28, 28)));
    dir.write("t10k-labels-idx1-ubyte.gz", &gzip(&idx_labels(&[1, 2])));
    let train = load(DatasetKind::FashionMnist, Some(dir.path()), Split::Train).unwrap();
    assert_eq!((train.n, train.c, train.h, train.w), (3, 1, 32, 32));
    assert_eq!(train.labels, vec![4, 0, 9]);
    assert_eq!(train.classes[9], "Ankle boot");
    assert_eq!(
        (train.mean[0], train.std[0], train.hflip),
        (0.2860, 0.3530, true)
    );
    for i in 0..3 {
        assert_padded(&train, i);
    }
    let test = load(DatasetKind::Mnist, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(test.labels, vec![1, 2]);
    assert_eq!(test.classes[2], "2");
    assert_eq!(
        (test.mean[0], test.std[0], test.hflip),
        (0.1307, 0.3081, false)
    );
    for i in 0..2 {
        assert_padded(&test, i);
    }
}

fn save_png_rgb(dir: &TempDir, rel: &str, w: u32, h: u32, seed: u32) -> image::RgbImage {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([
            (x * 5 + seed) as u8,
            (y * 3 + seed) as u8,
            (x + y + 2 * seed) as u8,
        ])
    });
    let p = dir.path().join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    img.save(&p).unwrap();
    img
}

#[test]
fn image_folder_with_train_and_test() {
    let dir = TempDir::new("folder");
    let exact = save_png_rgb(&dir, "train/cat/a.png", 32, 32, 1);
    save_png_rgb(&dir, "train/cat/b.PNG", 64, 48, 2);
    let grey = image::GrayImage::from_fn(10, 30, |x, y| image::Luma([(x * 20 + y) as u8]));
    dir.write("train/dog/notes.txt", b"not an image and skipped");
    grey.save(dir.path().join("train/dog/c.jpg")).unwrap();
    dir.write("train/dog/.hidden.png", b"skipped");
    save_png_rgb(&dir, "test/dog/d.png", 32, 32, 3);

    let train = load(
        DatasetKind::ImageFolder { size: 32 },
        Some(dir.path()),
        Split::Train,
    )
    .unwrap();
    assert_eq!(train.classes, vec!["cat", "dog"]);
    assert_eq!(train.labels, vec![0, 0, 1]);
    assert_eq!((train.n, train.c, train.h, train.w), (3, 3, 32, 32));
    // An image of the target size is copied exactly, as CHW planes.
    let a = train.image(0);
    for (i, px) in exact.pixels().enumerate() {
        for ch in 0..3 {
            assert_eq!(a[ch * 1024 + i], px.0[ch]);
        }
    }
    // Grey becomes equal R, G and B.
    let c = train.image(2);
    assert!((0..1024).all(|i| c[i] == c[1024 + i] && c[i] == c[2048 + i]));

    let test = load(
        DatasetKind::ImageFolder { size: 32 },
        Some(dir.path()),
        Split::Test,
    )
    .unwrap();
    // The test folder has only "dog", still label 1 of the training classes.
    assert_eq!(test.classes, vec!["cat", "dog"]);
    assert_eq!(test.labels, vec![1]);

    let small = load(
        DatasetKind::ImageFolder { size: 8 },
        Some(dir.path()),
        Split::Train,
    )
    .unwrap();
    assert_eq!((small.h, small.w, small.images.len()), (8, 8, 3 * 3 * 64));
}

#[test]
fn image_folder_without_split_folders_uses_every_fifth_file_for_test() {
    let dir = TempDir::new("folder-split");
    for i in 0..7 {
        save_png_rgb(&dir, &format!("b/{i}.png"), 4, 4, i);
    }
    for i in 0..3 {
        save_png_rgb(&dir, &format!("a/{i}.png"), 4, 4, 10 + i);
    }
    let kind = DatasetKind::ImageFolder { size: 4 };
    let train = load(kind, Some(dir.path()), Split::Train).unwrap();
    let test = load(kind, Some(dir.path()), Split::Test).unwrap();
    assert_eq!(train.labels, vec![0, 0, 0, 1, 1, 1, 1, 1, 1]);
    assert_eq!(test.labels, vec![1]);
    // Position 4 of class b (sorted names) is file 4.png, drawn with seed 4.
    assert_eq!(test.image(0)[1], (5 + 4) as u8);
}

#[test]
fn dataset_kind_names_parse() {
    let cases = [
        ("embedded", DatasetKind::Embedded),
        ("CIFAR10", DatasetKind::Cifar10),
        ("cifar100", DatasetKind::Cifar100),
        ("mnist", DatasetKind::Mnist),
        ("fashion-mnist", DatasetKind::FashionMnist),
        ("folder", DatasetKind::ImageFolder { size: 32 }),
        ("folder:64", DatasetKind::ImageFolder { size: 64 }),
        ("imagenet", DatasetKind::ImageNet { crop: 224 }),
        ("ImageNet:64", DatasetKind::ImageNet { crop: 64 }),
    ];
    for (s, kind) in cases {
        assert_eq!(s.parse::<DatasetKind>().unwrap(), kind);
        assert_eq!(kind.to_string().parse::<DatasetKind>().unwrap(), kind);
    }
    assert!("folder:0".parse::<DatasetKind>().is_err());
    assert!("imagenet:0".parse::<DatasetKind>().is_err());
    assert!("imagenette".parse::<DatasetKind>().is_err());
    assert_eq!(DatasetKind::default(), DatasetKind::Embedded);
}

#[test]
fn cifar_bad_inputs_name_the_file() {
    let dir = TempDir::new("cifar-bad");
    let p = Some(dir.path());
    let missing = load_err(DatasetKind::Cifar10, p, Split::Test);
    assert_mentions(&missing, &["missing file", "test_batch.bin"]);

    // One record short of a byte: expected 3073 bytes per record, found 2 * 3073 - 1.
    let mut recs = cifar_records(&[&[1], &[2]], 0);
    recs.pop();
    dir.write("test_batch.bin", &recs);
    let truncated = load_err(DatasetKind::Cifar10, p, Split::Test);
    assert_mentions(&truncated, &["test_batch.bin", "6145", "3073", "truncated"]);

    dir.write("test_batch.bin", b"");
    assert_mentions(
        &load_err(DatasetKind::Cifar10, p, Split::Test),
        &["test_batch.bin", "size 0 bytes", "3073"],
    );

    dir.write("test_batch.bin", &cifar_records(&[&[1], &[10]], 0));
    let label = load_err(DatasetKind::Cifar10, p, Split::Test);
    assert_mentions(&label, &["test_batch.bin", "record 1", "label 10"]);

    dir.write("test_batch.bin", &cifar_records(&[&[1]], 0));
    dir.write("batches.meta.txt", b"a\nb\n");
    let meta = load_err(DatasetKind::Cifar10, p, Split::Test);
    assert_mentions(&meta, &["batches.meta.txt", "2 class names", "expected 10"]);

    // A CIFAR-10 file read as CIFAR-100: 3073-byte records do not fit 3074.
    dir.write("train.bin", &cifar_records(&[&[1], &[2], &[3]], 0));
    let wrong = load_err(DatasetKind::Cifar100, p, Split::Train);
    assert_mentions(&wrong, &["train.bin", "9219", "3074"]);

    dir.write("train.bin", &cifar_records(&[&[1, 100]], 0));
    let fine = load_err(DatasetKind::Cifar100, p, Split::Train);
    assert_mentions(&fine, &["train.bin", "label 100"]);

    // Train needs all five batches; the first absent one is named.
    write_cifar10(&dir, "");
    std::fs::remove_file(dir.path().join("data_batch_4.bin")).unwrap();
    dir.write("batches.meta.txt", b"");
    let batch = load_err(DatasetKind::Cifar10, p, Split::Train);
    assert_mentions(&batch, &["missing file", "data_batch_4.bin"]);
}

#[test]
fn idx_bad_inputs_name_the_file() {
    let dir = TempDir::new("idx-bad");
    let p = Some(dir.path());
    let kind = DatasetKind::FashionMnist;
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["missing file", "train-images-idx3-ubyte"],
    );

    dir.write("train-images-idx3-ubyte", &idx_images(2, 28, 28));
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["missing file", "train-labels-idx1-ubyte"],
    );

    dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2]));
    let mut bad_magic = idx_images(2, 28, 28);
    bad_magic[3] = 0x01;
    dir.write("train-images-idx3-ubyte", &bad_magic);
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &[
            "train-images-idx3-ubyte",
            "bad IDX magic 0x00000801",
            "0x00000803",
        ],
    );

    let mut short = idx_images(2, 28, 28);
    short.truncate(16 + 784 + 100);
    dir.write("train-images-idx3-ubyte", &short);
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["train-images-idx3-ubyte", "size 900 bytes", "expected 1584"],
    );

    dir.write("train-images-idx3-ubyte", &idx_images(2, 27, 28));
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["train-images-idx3-ubyte", "27x28", "28x28"],
    );

    dir.write("train-images-idx3-ubyte", &idx_images(2, 28, 28));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 10]));
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["train-labels-idx1-ubyte", "label 10 of image 1"],
    );

    dir.write("train-labels-idx1-ubyte", &idx_labels(&[1, 2, 3]));
    assert_mentions(
        &load_err(kind, p, Split::Train),
        &["train-labels-idx1-ubyte", "3 labels for the 2 images"],
    );

    dir.write("t10k-images-idx3-ubyte", b"\x00\x00");
    dir.write("t10k-labels-idx1-ubyte", &idx_labels(&[1]));
    assert_mentions(
        &load_err(kind, p, Split::Test),
        &[
            "t10k-images-idx3-ubyte",
            "shorter than the 16-byte IDX header",
        ],
    );

    std::fs::remove_file(dir.path().join("t10k-images-idx3-ubyte")).unwrap();
    let gz = gzip(&idx_images(1, 28, 28));
    dir.write("t10k-images-idx3-ubyte.gz", &gz[..gz.len() / 2]);
    assert_mentions(
        &load_err(kind, p, Split::Test),
        &["t10k-images-idx3-ubyte.gz", "gzip"],
    );
}

#[test]
fn image_folder_bad_inputs_name_the_file() {
    let dir = TempDir::new("folder-bad");
    let kind = DatasetKind::ImageFolder { size: 32 };
    let missing = dir.path().join("nowhere");
    assert_mentions(
        &load_err(kind, Some(&missing), Split::Train),
        &["missing folder", "nowhere"],
    );

    save_png_rgb(&dir, "train/cat/a.png", 8, 8, 0);
    let broken = dir.write("train/dog/broken.png", b"this is not a PNG");
    assert_mentions(
        &load_err(kind, Some(dir.path()), Split::Train),
        &[&broken.display().to_string(), "not a readable PNG or JPEG"],
    );

    std::fs::remove_file(&broken).unwrap();
    dir.write("train/dog/readme.txt", b"no images here");
    assert_mentions(
        &load_err(kind, Some(dir.path()), Split::Train),
        &["class folder", "dog", "is empty"],
    );

    assert_mentions(
        &load_err(kind, Some(dir.path()), Split::Test),
        &["missing folder", "test"],
    );

    save_png_rgb(&dir, "train/dog/b.png", 8, 8, 0);
    save_png_rgb(&dir, "test/bird/c.png", 8, 8, 0);
    assert_mentions(
        &load_err(kind, Some(dir.path()), Split::Test),
        &["bird", "is not a class of"],
    );

    let flat = TempDir::new("folder-flat");
    save_png_rgb(&flat, "a/0.png", 4, 4, 0);
    assert_mentions(
        &load_err(kind, Some(flat.path()), Split::Test),
        &["no test images"],
    );
    let empty = TempDir::new("folder-empty");
    assert_mentions(
        &load_err(kind, Some(empty.path()), Split::Train),
        &["no class sub-folders"],
    );
}

#[test]
fn paths_are_required_or_refused() {
    assert_mentions(
        &load_err(DatasetKind::Cifar10, None, Split::Train),
        &["cifar10 needs a path"],
    );
    assert_mentions(
        &load_err(DatasetKind::Embedded, Some(Path::new("/tmp")), Split::Train),
        &["takes no path"],
    );
}

#[test]
fn embedded_subset_is_balanced_fashion_mnist() {
    let train = load(DatasetKind::Embedded, None, Split::Train).unwrap();
    let test = load(DatasetKind::Embedded, None, Split::Test).unwrap();
    assert_eq!((train.n, train.c, train.h, train.w), (5000, 1, 32, 32));
    assert_eq!(test.n, 1000);
    assert_eq!(train.class_counts(), vec![500; 10]);
    assert_eq!(test.class_counts(), vec![100; 10]);
    assert_eq!(train.classes[0], "T-shirt/top");
    assert!(train.hflip);
    // The 2-pixel padding border is black in every image, and the images are not blank.
    for ds in [&train, &test] {
        for i in 0..ds.n {
            let img = ds.image(i);
            assert!((0..32).all(|k| img[k] == 0 && img[31 * 32 + k] == 0 && img[k * 32] == 0));
            assert!(img.iter().any(|&p| p > 100));
        }
    }
    // Pixel mean close to the full training set's (the subset is 1/12 of it).
    let mean = train.images.iter().map(|&p| p as f64).sum::<f64>() / train.images.len() as f64;
    let mean_28 = mean / 255.0 * (32.0 * 32.0) / (28.0 * 28.0);
    assert!((mean_28 - 0.2860).abs() < 0.01, "mean {mean_28}");
}

/// A random dataset of n images [c, h, w] with 10 classes.
fn random_dataset(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    Dataset {
        name: format!("random {n}"),
        images: (0..n * c * h * w).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|_| rng.below(10) as u32).collect(),
        n,
        c,
        h,
        w,
        classes: (0..10).map(|i| i.to_string()).collect(),
        mean: [0.485, 0.456, 0.406][..c].to_vec(),
        std: [0.229, 0.224, 0.225][..c].to_vec(),
        hflip: true,
    }
}

/// The official pipeline written naively: pad the raw image with 0 into (h+2p)x(w+2p), crop at
/// (top, left), flip, then (pixel/255 - mean)/std in f32.
fn reference_sample(
    ds: &Dataset,
    i: usize,
    pad: usize,
    top: usize,
    left: usize,
    flip: bool,
) -> Vec<f32> {
    let (c, h, w) = (ds.c, ds.h, ds.w);
    let (ph, pw) = (h + 2 * pad, w + 2 * pad);
    let mut padded = vec![0u8; c * ph * pw];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                padded[(ch * ph + y + pad) * pw + x + pad] = ds.image(i)[(ch * h + y) * w + x];
            }
        }
    }
    let mut out = vec![0f32; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            for x in 0..w {
                let cx = if flip { w - 1 - x } else { x };
                let p = padded[(ch * ph + y + top) * pw + cx + left];
                out[(ch * h + y) * w + x] = (p as f32 / 255.0 - ds.mean[ch]) / ds.std[ch];
            }
        }
    }
    out
}

#[test]
fn augmentation_matches_pad_crop_flip_normalise() {
    let ds = random_dataset(2, 3, 7, 5, 1);
    let norm = Normalizer::for_dataset(&ds);
    let pad = CROP_PADDING;
    let mut out = vec![0f32; ds.sample_len()];
    for i in 0..ds.n {
        for top in 0..=2 * pad {
            for left in 0..=2 * pad {
                for flip in [false, true] {
                    let crop = Crop {
                        dy: top as isize - pad as isize,
                        dx: left as isize - pad as isize,
                        flip,
                    };
                    write_sample(&ds, i, &norm, crop, &mut out);
                    assert_eq!(
                        out,
                        reference_sample(&ds, i, pad, top, left, flip),
                        "{crop:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn augmentation_properties() {
    let ds = random_dataset(1, 3, 32, 32, 2);
    let norm = Normalizer::for_dataset(&ds);
    let len = ds.sample_len();
    let (mut plain, mut flipped, mut shifted) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
    write_sample(&ds, 0, &norm, Crop::IDENTITY, &mut plain);
    // Unaugmented = normalised pixels.
    for (k, &p) in ds.image(0).iter().enumerate() {
        let ch = k / 1024;
        assert_eq!(plain[k], (p as f32 / 255.0 - ds.mean[ch]) / ds.std[ch]);
    }
    // The flip mirrors every row.
    let flip = Crop {
        dy: 0,
        dx: 0,
        flip: true,
    };
    write_sample(&ds, 0, &norm, flip, &mut flipped);
    for ch in 0..3 {
        for y in 0..32 {
            for x in 0..32 {
                let at = |xx: usize| (ch * 32 + y) * 32 + xx;
                assert_eq!(flipped[at(x)], plain[at(31 - x)]);
            }
        }
    }
    // Shifted by the full padding: the first 4 rows and columns are padding, which is the
    // normalised black pixel (0 - mean)/std, and the rest is the image moved by 4.
    let corner = Crop {
        dy: -4,
        dx: -4,
        flip: false,
    };
    write_sample(&ds, 0, &norm, corner, &mut shifted);
    for ch in 0..3 {
        let black = (0.0 - ds.mean[ch]) / ds.std[ch];
        assert!(black < -1.5);
        for y in 0..32 {
            for x in 0..32 {
                let v = shifted[(ch * 32 + y) * 32 + x];
                if y < 4 || x < 4 {
                    assert_eq!(v, black);
                } else {
                    assert_eq!(v, plain[(ch * 32 + y - 4) * 32 + x - 4]);
                }
            }
        }
    }

    // Offsets cover [-4, 4] and both flips, and never leave it; no flip when not allowed.
    let aug = Augment {
        pad: 4,
        hflip: true,
    };
    let mut rng = Rng::new(3);
    let mut seen = [[[false; 2]; 9]; 9];
    for _ in 0..5000 {
        let c = aug.sample(&mut rng);
        assert!(
            (-4..=4).contains(&c.dy) && (-4..=4).contains(&c.dx),
            "{c:?}"
        );
        seen[(c.dy + 4) as usize][(c.dx + 4) as usize][c.flip as usize] = true;
    }
    assert!(seen.iter().flatten().flatten().all(|&s| s));
    let digits = Augment {
        pad: 4,
        hflip: false,
    };
    assert!((0..1000).all(|_| !digits.sample(&mut rng).flip));
    let mnist_like = Dataset {
        hflip: false,
        ..random_dataset(1, 1, 32, 32, 4)
    };
    assert!(!Augment::for_dataset(&mnist_like).hflip);
}

fn collect(batcher: Batcher) -> Vec<rbnn::data::Batch> {
    batcher.collect()
}

#[test]
fn batcher_is_deterministic_and_covers_each_sample_once() {
    let ds = Arc::new(random_dataset(37, 3, 8, 8, 5));
    let plan = BatchPlan::train(&ds, 8, 42);
    let a = collect(Batcher::new(ds.clone(), plan, 0..3).unwrap());
    let b = collect(
        Batcher::new(
            ds.clone(),
            BatchPlan {
                prefetch: 1,
                ..plan
            },
            0..3,
        )
        .unwrap(),
    );
    assert_eq!(a.len(), 3 * 5);
    assert_eq!(a, b, "same seed, same batches, whatever the prefetch");

    // Resumed at epoch 2: the same batches as the uninterrupted run.
    let resumed = collect(Batcher::new(ds.clone(), plan, 2..3).unwrap());
    assert_eq!(resumed[..], a[10..]);

    let norm = Normalizer::for_dataset(&ds);
    for epoch in 0..3 {
        let batches = &a[epoch * 5..(epoch + 1) * 5];
        let sizes: Vec<usize> = batches.iter().map(|b| b.len()).collect();
        assert_eq!(sizes, vec![8, 8, 8, 8, 5], "last partial batch kept");
        let mut seen: Vec<u32> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        seen.sort();
        assert_eq!(
            seen,
            (0..37).collect::<Vec<u32>>(),
            "each sample once per epoch"
        );
        for (k, batch) in batches.iter().enumerate() {
            assert_eq!((batch.epoch, batch.index), (epoch, k));
            assert_eq!(batch.images.len(), batch.len() * 3 * 64);
            for (j, &i) in batch.indices.iter().enumerate() {
                assert_eq!(batch.labels[j], ds.labels[i as usize]);
                // Each sample is its own image, cropped/flipped by the plan's draw.
                let mut want = vec![0f32; 192];
                write_sample(&ds, i as usize, &norm, plan.crop(epoch, i), &mut want);
                assert_eq!(batch.images[j * 192..(j + 1) * 192], want[..]);
            }
        }
    }
    // Different epochs: a different order and different crops.
    assert_ne!(a[0].indices, a[5].indices);
    assert_ne!(
        (0..37).map(|i| plan.crop(0, i)).collect::<Vec<_>>(),
        (0..37).map(|i| plan.crop(1, i)).collect::<Vec<_>>()
    );
    // A different seed: a different order.
    let other = collect(Batcher::new(ds.clone(), BatchPlan { seed: 43, ..plan }, 0..1).unwrap());
    assert_ne!(other[0].indices, a[0].indices);
}

#[test]
fn sharded_batchers_split_each_batch_into_its_parts_exactly() {
    use rbnn::data::Shard;
    // 3 ranks accumulating 2 micro-batches: each global batch of 12 in 6 parts; 41 images make
    // 3 full batches and a last one of 5 (parts of 0 or 1 sample: the trainer drops such a
    // batch, the batcher still splits it).
    let ds = Arc::new(random_dataset(41, 3, 8, 8, 9));
    let plan = BatchPlan::train(&ds, 12, 42);
    let whole = collect(Batcher::new(ds.clone(), plan, 1..3).unwrap());
    let ranks: Vec<Vec<rbnn::data::Batch>> = (0..3)
        .map(|rank| {
            let shard = Shard {
                parts: 6,
                first: rank * 2,
                count: 2,
            };
            collect(Batcher::new(ds.clone(), BatchPlan { shard, ..plan }, 1..3).unwrap())
        })
        .collect();
    for (i, batch) in whole.iter().enumerate() {
        // Parts in order: rank 0's two, rank 1's two, rank 2's two.
        let parts: Vec<&rbnn::data::Batch> = (0..6).map(|p| &ranks[p / 2][i * 2 + p % 2]).collect();
        let indices: Vec<u32> = parts.iter().flat_map(|p| p.indices.clone()).collect();
        let images: Vec<f32> = parts.iter().flat_map(|p| p.images.clone()).collect();
        assert_eq!(
            indices, batch.indices,
            "batch {i}: the parts are the batch, in order"
        );
        assert_eq!(images, batch.images, "batch {i}: same crops and flips");
        let sizes: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        let want = if batch.len() == 12 {
            vec![2; 6]
        } else {
            vec![0, 1, 1, 1, 1, 1]
        };
        assert_eq!(sizes, want, "batch {i}");
        assert!(parts
            .iter()
            .all(|p| p.epoch == batch.epoch && p.index == batch.index));
    }
    let bad = Shard {
        parts: 2,
        first: 1,
        count: 2,
    };
    assert!(Batcher::new(ds.clone(), BatchPlan { shard: bad, ..plan }, 0..1).is_err());
}

#[test]
fn batcher_drop_last_eval_order_and_recycling() {
    let ds = Arc::new(random_dataset(10, 1, 4, 4, 6));
    let plan = BatchPlan {
        drop_last: true,
        ..BatchPlan::train(&ds, 4, 1)
    };
    assert_eq!(plan.batches_per_epoch(10), 2);
    assert_eq!(BatchPlan::train(&ds, 4, 1).batches_per_epoch(10), 3);
    let batcher = Batcher::new(ds.clone(), plan, 0..2).unwrap();
    assert_eq!((batcher.batches_per_epoch(), batcher.len()), (2, 4));
    assert!(collect(batcher).iter().all(|b| b.len() == 4));
    let too_big = BatchPlan {
        drop_last: true,
        ..BatchPlan::train(&ds, 11, 1)
    };
    assert!(Batcher::new(ds.clone(), too_big, 0..1).is_err());
    assert!(Batcher::new(ds.clone(), BatchPlan::eval(0), 0..1).is_err());

    // Eval: dataset order, normalised only, last batch partial; recycled buffers are refilled.
    let norm = Normalizer::for_dataset(&ds);
    let mut eval = Batcher::new(ds.clone(), BatchPlan::eval(4), 0..1).unwrap();
    let mut order = Vec::new();
    while let Some(batch) = eval.next() {
        for (j, &i) in batch.indices.iter().enumerate() {
            for (k, &p) in ds.image(i as usize).iter().enumerate() {
                assert_eq!(batch.images[j * 16 + k], norm.value(0, p));
            }
        }
        order.extend_from_slice(&batch.indices);
        eval.recycle(batch);
    }
    assert_eq!(order, (0..10).collect::<Vec<u32>>());

    // Dropping a batcher that is still producing returns promptly.
    let mut long = Batcher::new(
        ds,
        BatchPlan::train(&random_dataset(10, 1, 4, 4, 6), 2, 1),
        0..1000,
    )
    .unwrap();
    assert!(long.next().is_some());
    drop(long);
}

/// One epoch of CIFAR-sized batches (50,000 3x32x32 images, batch 256, crop + flip); run with
/// `cargo test --release --test data -- --ignored --nocapture`.
#[test]
#[ignore]
fn batcher_epoch_time_cifar_sized() {
    let ds = Arc::new(random_dataset(50_000, 3, 32, 32, 7));
    let plan = BatchPlan::train(&ds, 256, 0);
    for epoch in 0..3 {
        let start = std::time::Instant::now();
        let mut batcher = Batcher::new(ds.clone(), plan, epoch..epoch + 1).unwrap();
        let mut images = 0;
        while let Some(batch) = batcher.next() {
            images += batch.len();
            batcher.recycle(batch);
        }
        let s = start.elapsed().as_secs_f64();
        println!(
            "epoch {epoch}: {images} images in {:.3} s ({:.0} img/s)",
            s,
            images as f64 / s
        );
    }
}

/// Every reader produces images of its kind's facts (data::facts): channels, size, mean/std,
/// flips and, without a names file, the standard class names; the packed model's metadata
/// (infer::export::meta_for_dataset) takes the same facts.
#[test]
fn readers_produce_what_their_kind_facts_say() {
    fn check(kind: DatasetKind, ds: &Dataset) {
        let facts = kind.facts();
        assert_eq!([ds.c, ds.h, ds.w], facts.input(), "{kind}: image shape");
        assert_eq!(
            (&ds.mean[..], &ds.std[..]),
            (facts.mean, facts.std),
            "{kind}"
        );
        assert_eq!(ds.hflip, facts.hflip, "{kind}: flips");
        if let Some(names) = facts.classes {
            assert_eq!(ds.classes, names, "{kind}: class names");
        }
        let meta = rbnn::infer::export::meta_for_dataset(
            rbnn::model::ModelKind::Resnet20,
            &kind.to_string(),
            None,
            "test",
        );
        if let Some(names) = facts.classes {
            let meta = meta.unwrap();
            assert_eq!(meta.input, facts.input(), "{kind}: metadata input");
            assert_eq!(meta.content, facts.content, "{kind}: metadata content");
            assert_eq!((&meta.mean[..], &meta.std[..]), (facts.mean, facts.std));
            assert_eq!(meta.classes, names, "{kind}: metadata classes");
        } else {
            // An image folder's names are its sub-folders: the folder is needed.
            assert!(format!("{:#}", meta.unwrap_err()).contains("--data-path"));
        }
    }
    let embedded = load(DatasetKind::Embedded, None, Split::Test).unwrap();
    check(DatasetKind::Embedded, &embedded);
    assert_eq!(DatasetKind::Embedded.facts().content, 28);

    let dir = TempDir::new("facts");
    write_cifar10(&dir, "");
    let cifar = load(DatasetKind::Cifar10, Some(dir.path()), Split::Test).unwrap();
    check(DatasetKind::Cifar10, &cifar);
    dir.write("train-images-idx3-ubyte", &idx_images(3, 28, 28));
    dir.write("train-labels-idx1-ubyte", &idx_labels(&[4, 0, 9]));
    for kind in [DatasetKind::Mnist, DatasetKind::FashionMnist] {
        check(kind, &load(kind, Some(dir.path()), Split::Train).unwrap());
    }
    save_png_rgb(&dir, "pictures/cat/a.png", 12, 9, 1);
    save_png_rgb(&dir, "pictures/dog/b.png", 7, 7, 2);
    let kind = DatasetKind::ImageFolder { size: 8 };
    let folder = load(kind, Some(&dir.path().join("pictures")), Split::Train).unwrap();
    check(kind, &folder);

    // ImageNet is streamed: its shape and its class names (the folder's) against the facts.
    let root = dir.path().join("imagenet");
    let opts = rbnn::data::synth::SynthOptions {
        classes: 2,
        train_per_class: 1,
        val_per_class: 1,
        width: (40, 60),
        height: (40, 60),
        ..Default::default()
    };
    rbnn::data::synth::write_imagenet_like(&root, &opts).unwrap();
    let kind = DatasetKind::ImageNet { crop: 24 };
    let facts = kind.facts();
    let images = rbnn::data::imagenet::ImageNet::open(&root, Split::Train, 24).unwrap();
    assert_eq!(images.image_shape(), facts.input());
    let meta = rbnn::infer::export::meta_for_dataset(
        rbnn::model::ModelKind::Resnet20,
        &kind.to_string(),
        root.to_str(),
        "test",
    )
    .unwrap();
    assert_eq!(meta.input, [3, 24, 24]);
    assert_eq!((&meta.mean[..], &meta.std[..]), (facts.mean, facts.std));
    assert_eq!(
        meta.classes,
        rbnn::data::imagenet::class_names(&root).unwrap()
    );
    assert_eq!(meta.classes.len(), 2);
}
