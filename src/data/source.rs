//! Where a split's samples come from: a `Dataset` held in memory (CIFAR, IDX, image folders, the
//! embedded subset; batches made on one thread from u8 pixels), or an `ImageNet` folder streamed
//! from disk (batches made by a pool of decoding threads). The batcher and the trainer see only
//! this: size, classes, input shape, labels.

use super::imagenet::ImageNet;
use super::Dataset;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub enum Source {
    Memory(Arc<Dataset>),
    Stream(Arc<ImageNet>),
}

impl From<Arc<Dataset>> for Source {
    fn from(ds: Arc<Dataset>) -> Source {
        Source::Memory(ds)
    }
}

impl From<Dataset> for Source {
    fn from(ds: Dataset) -> Source {
        Source::Memory(Arc::new(ds))
    }
}

impl From<ImageNet> for Source {
    fn from(s: ImageNet) -> Source {
        Source::Stream(Arc::new(s))
    }
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::Memory(d) => &d.name,
            Source::Stream(s) => &s.name,
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        match self {
            Source::Memory(d) => d.n,
            Source::Stream(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn classes(&self) -> &[String] {
        match self {
            Source::Memory(d) => &d.classes,
            Source::Stream(s) => &s.classes,
        }
    }

    /// [c, h, w] of every sample the batcher makes.
    pub fn image_shape(&self) -> [usize; 3] {
        match self {
            Source::Memory(d) => [d.c, d.h, d.w],
            Source::Stream(s) => s.image_shape(),
        }
    }

    /// Floats per sample.
    pub fn sample_len(&self) -> usize {
        self.image_shape().iter().product()
    }

    pub fn label(&self, i: usize) -> u32 {
        match self {
            Source::Memory(d) => d.labels[i],
            Source::Stream(s) => s.label(i),
        }
    }

    /// Whether a random horizontal flip is a valid augmentation.
    pub fn hflip(&self) -> bool {
        match self {
            Source::Memory(d) => d.hflip,
            Source::Stream(_) => true,
        }
    }
}
