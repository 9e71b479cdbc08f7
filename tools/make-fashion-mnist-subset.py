#!/usr/bin/env python3
"""Builds data/fashion-mnist-subset/ (the dataset compiled into rbnn) from the full Fashion-MNIST.

Rule: in each split, keep the first K images of every class in the original file order
(K = 500 for train, 100 for test), and write the kept images in their original relative order
as gzipped IDX files (gzip level 9, mtime 0, no file name, so the output is byte-for-byte
reproducible).
Source: Debian's dataset-fashion-mnist (`apt-get install -y dataset-fashion-mnist`), which puts
the official IDX files in /usr/share/datasets/fashion-mnist.
Usage: tools/make-fashion-mnist-subset.py [SRC_DIR] [OUT_DIR]   (python3 standard library only)
"""
import gzip
import struct
import sys

src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
out = sys.argv[2] if len(sys.argv) > 2 else "data/fashion-mnist-subset"


def read(path):
    with gzip.open(path, "rb") as f:
        return f.read()


for split, prefix, per_class in [("train", "train", 500), ("test", "t10k", 100)]:
    images = read(f"{src}/{prefix}-images-idx3-ubyte.gz")
    labels = read(f"{src}/{prefix}-labels-idx1-ubyte.gz")
    magic, n, rows, cols = struct.unpack(">IIII", images[:16])
    lmagic, ln = struct.unpack(">II", labels[:8])
    assert (magic, lmagic, n, rows, cols) == (0x803, 0x801, ln, 28, 28), (split, magic, lmagic)
    size = rows * cols
    taken = [0] * 10
    keep = []
    for i in range(n):
        label = labels[8 + i]
        if taken[label] < per_class:
            taken[label] += 1
            keep.append(i)
    assert taken == [per_class] * 10, (split, taken)
    k = len(keep)
    img = struct.pack(">IIII", 0x803, k, rows, cols) + b"".join(
        images[16 + i * size : 16 + (i + 1) * size] for i in keep
    )
    lab = struct.pack(">II", 0x801, k) + bytes(labels[8 + i] for i in keep)
    for name, data in [
        (f"{prefix}-images-idx3-ubyte.gz", img),
        (f"{prefix}-labels-idx1-ubyte.gz", lab),
    ]:
        with open(f"{out}/{name}", "wb") as f:
            f.write(gzip.compress(data, compresslevel=9, mtime=0))
    print(f"{split}: {k} images ({per_class} per class), last source index {keep[-1]}")
