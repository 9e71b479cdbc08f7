//! What each dataset kind is, before any file is read: the images' channels and size as the
//! readers produce them, where the picture sits in them, the normalisation, the class names
//! and whether flips are a valid augmentation. The readers, training and export all take these
//! from here.

use super::DatasetKind;

/// Mean and std per channel that the official RBNN code uses for CIFAR-10 (the ImageNet values),
/// also used for CIFAR-100 and image folders so every RGB dataset follows the paper's recipe.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// Mean/std of the full 60,000-image Fashion-MNIST training set (28x28, pixel/255).
pub const FASHION_MNIST_MEAN: f32 = 0.2860;
pub const FASHION_MNIST_STD: f32 = 0.3530;
/// Mean/std of the full 60,000-image MNIST training set (28x28, pixel/255).
pub const MNIST_MEAN: f32 = 0.1307;
pub const MNIST_STD: f32 = 0.3081;

/// CIFAR-10's class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// The standard fine label names, in label order (alphabetical).
pub const CIFAR100_CLASSES: [&str; 100] = [
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
];

/// Fashion-MNIST's class names, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// MNIST's classes: the digits.
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// Side of the images of the MNIST family and of the square they are zero-padded to.
pub const MNIST_SIDE: usize = 28;
pub const PADDED_SIDE: usize = 32;

/// The facts of one dataset kind.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetFacts {
    /// Channels of the images the reader produces (1 grey, 3 RGB).
    pub channels: usize,
    /// Side of the square images the reader produces: the models' input is [channels, size, size].
    pub size: usize,
    /// Side of the picture inside them, centred, black around it: 28 for the 28x28 MNIST family
    /// zero-padded to 32.
    pub content: usize,
    /// Per channel: input = (pixel/255 - mean) / std.
    pub mean: &'static [f32],
    pub std: &'static [f32],
    /// The class names in label order where the kind fixes them (an image folder's and
    /// ImageNet's are their sub-folders; CIFAR's reader prefers the names file beside the data
    /// when there is one).
    pub classes: Option<&'static [&'static str]>,
    /// Whether a random horizontal flip is a valid augmentation (not for digits).
    pub hflip: bool,
}

impl DatasetFacts {
    /// [C, H, W] of one input image.
    pub fn input(&self) -> [usize; 3] {
        [self.channels, self.size, self.size]
    }
}

impl DatasetKind {
    pub fn facts(self) -> DatasetFacts {
        let mnist_family =
            |mean: &'static [f32], std, classes: &'static [&'static str], hflip| DatasetFacts {
                channels: 1,
                size: PADDED_SIDE,
                content: MNIST_SIDE,
                mean,
                std,
                classes: Some(classes),
                hflip,
            };
        let rgb = |size, classes| DatasetFacts {
            channels: 3,
            size,
            content: size,
            mean: &IMAGENET_MEAN,
            std: &IMAGENET_STD,
            classes,
            hflip: true,
        };
        match self {
            DatasetKind::Embedded | DatasetKind::FashionMnist => mnist_family(
                &[FASHION_MNIST_MEAN],
                &[FASHION_MNIST_STD],
                &FASHION_MNIST_CLASSES,
                true,
            ),
            DatasetKind::Mnist => mnist_family(&[MNIST_MEAN], &[MNIST_STD], &MNIST_CLASSES, false),
            DatasetKind::Cifar10 => rgb(32, Some(&CIFAR10_CLASSES)),
            DatasetKind::Cifar100 => rgb(32, Some(&CIFAR100_CLASSES)),
            DatasetKind::ImageFolder { size } => rgb(size, None),
            DatasetKind::ImageNet { crop } => rgb(crop, None),
        }
    }
}
