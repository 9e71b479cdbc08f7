//! Training memory planned without allocating (train::memory on a Gpu::planner): the numbers
//! the README quotes for the official ImageNet recipe of resnet18_1w1a_imagenet (batch 512, the
//! partial last batch of 143 images, evaluation batch 256) on a 24 GB GPU, which it does not fit
//! yet; the same batch on an adapter whose limits it exceeds is the error naming the tensor and
//! the limit; the planner allocates nothing and its totals grow with the batch as the
//! activations do.
mod common;

use rbnn::model::ModelKind;
use rbnn::train::memory::{plan, TrainingShape};

/// ImageNet's 1,281,167 training images in batches of 512 leave a last batch of 143.
const IMAGENET_TAIL: usize = 1_281_167 % 512;

/// README: the largest batch whose training step fits 24 GB.
const LARGEST_STEP_BATCH_24GB: usize = 286;

fn resnet18_imagenet(batch: usize, tail: usize, eval_batch: usize) -> TrainingShape {
    TrainingShape {
        kind: ModelKind::Resnet18Imagenet,
        classes: 1000,
        image: [3, 224, 224],
        batch,
        tail,
        eval_batch,
    }
}

/// A hardware adapter (the tiled kernels) whose storage bindings reach 4 GiB, as Vulkan drivers
/// of 24 GB GPUs report (maxStorageBufferRange 2^32 - 1).
fn gpu_24gb_limits(gpu: &rbnn::gpu::Gpu) -> wgpu::Limits {
    wgpu::Limits {
        max_storage_buffer_binding_size: u32::MAX as u64,
        max_buffer_size: u32::MAX as u64,
        ..gpu.limits.clone()
    }
}

/// Parameters, the training network at `batch` and the rotation update on a 24 GB GPU.
fn step_bytes(gpu: &rbnn::gpu::Gpu, batch: usize) -> u64 {
    let planner = gpu.planner(gpu_24gb_limits(gpu), true);
    plan(&planner, &resnet18_imagenet(batch, 0, 0))
        .unwrap()
        .total()
}

const GIB: f64 = (1u64 << 30) as f64;
const GB24: u64 = 24_000_000_000;

/// The numbers the README's ImageNet section quotes (planned 2026-12-03): they do not fit yet.
#[test]
fn resnet18_imagenet_memory_at_batch_512() {
    let gpu = gpu_or_skip!();
    assert_eq!(IMAGENET_TAIL, 143);
    let planner = gpu.planner(gpu_24gb_limits(gpu), true);
    let m = plan(&planner, &resnet18_imagenet(512, IMAGENET_TAIL, 256)).unwrap();
    eprintln!(
        "resnet18_1w1a_imagenet, batch 512 (+143, eval 256): {}",
        rbnn::bench::format_memory(&m)
    );
    // The training step dominates: activations and gradients of 512 images at 224x224.
    assert!(m.train_step > m.evaluation && m.train_step > m.tail_step);
    assert!(m.parameters > 0 && m.rotation > 0);
    // README: the whole run 59.7 GiB, the step at batch 512 39.3 GiB: over 24 GB.
    assert!((m.total() as f64 / GIB - 59.7).abs() < 0.1, "{}", m.total());
    let step = m.parameters + m.train_step + m.rotation;
    assert!((step as f64 / GIB - 39.3).abs() < 0.1, "{step}");
    assert!(step > GB24);
    // README: the largest batch whose training step fits 24 GB (the step grows with the batch).
    let (mut fits, mut over) = (2, 512);
    while over - fits > 1 {
        let mid = (fits + over) / 2;
        if step_bytes(gpu, mid) <= GB24 {
            fits = mid
        } else {
            over = mid
        }
    }
    eprintln!(
        "largest batch whose step fits 24 GB: {fits} ({:.2} GiB)",
        step_bytes(gpu, fits) as f64 / GIB
    );
    assert_eq!(fits, LARGEST_STEP_BATCH_24GB);

    // Twice the batch: the training network's buffers about double (not exactly: the weight
    // side's scratch, BatchNorm partials and split weight-gradient scratch do not grow).
    let small = plan(&planner, &resnet18_imagenet(64, 0, 0)).unwrap();
    let planner = gpu.planner(gpu_24gb_limits(gpu), true);
    let double = plan(&planner, &resnet18_imagenet(128, 0, 0)).unwrap();
    assert_eq!(small.parameters, double.parameters);
    let ratio = double.train_step as f64 / small.train_step as f64;
    assert!((1.8..=2.0).contains(&ratio), "{ratio}");
    // Nothing was allocated: the real Gpu's planned_bytes is None, a planner's is its count.
    assert!(gpu.planned_bytes().is_none());
    assert_eq!(planner.planned_bytes(), Some(double.total()));
}

#[test]
fn a_batch_over_the_adapters_limits_is_the_named_limit_error() {
    let gpu = gpu_or_skip!();
    // 128 MiB per storage binding (lavapipe's limit; any smaller than the stem's output).
    let limits = wgpu::Limits {
        max_storage_buffer_binding_size: 128 << 20,
        ..gpu.limits.clone()
    };
    let planner = gpu.planner(limits, false);
    let e = format!(
        "{:#}",
        plan(&planner, &resnet18_imagenet(512, 0, 0)).unwrap_err()
    );
    assert!(
        e.contains("training resnet18_1w1a_imagenet at batch 512")
            && e.contains("over the adapter's limit of 128 MiB per storage binding")
            && e.contains("use a smaller batch size"),
        "{e}"
    );
}
