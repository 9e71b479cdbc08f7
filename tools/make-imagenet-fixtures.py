#!/usr/bin/env python3
"""Writes tests/fixtures/imagenet/: pictures made once with Pillow (pip install pillow; made with
Pillow 13.0.0) that the image crate cannot write, and Pillow's own results to compare against.

  cmyk.jpg, cmyk-pillow.png   a CMYK JPEG (Adobe, as Photoshop writes them; ImageNet has ~22)
                              and Pillow's Image.open(f).convert("RGB") of it
  grey.jpg, grey-pillow.png   a greyscale JPEG and Pillow's convert("RGB") of it
  resize-src.png              a 61x47 RGB picture (lossless, so every decoder agrees)
  resize-down.png             Pillow's bilinear (antialiased) resize of it to 23x19
  resize-up.png               ... to 150x101
  resize-crop.png             torchvision's resized_crop: crop (left 5, top 7, 40x30), resize to 24x24

Run from the repository root: python3 tools/make-imagenet-fixtures.py
"""
import math
import random
from pathlib import Path

from PIL import Image

OUT = Path("tests/fixtures/imagenet")


def pattern(w, h, seed):
    rnd = random.Random(seed)
    img = Image.new("RGB", (w, h))
    px = img.load()
    for y in range(h):
        for x in range(w):
            r = 128 + 100 * math.sin(x / 5.0) * math.cos(y / 7.0)
            g = 255 * x / (w - 1)
            b = 255 * y / (h - 1)
            px[x, y] = tuple(int(max(0, min(255, v + rnd.uniform(-20, 20)))) for v in (r, g, b))
    return img


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    cmyk = pattern(40, 32, 1).convert("CMYK")
    cmyk.save(OUT / "cmyk.jpg", quality=95)
    Image.open(OUT / "cmyk.jpg").convert("RGB").save(OUT / "cmyk-pillow.png")
    assert Image.open(OUT / "cmyk.jpg").mode == "CMYK"

    grey = pattern(37, 29, 2).convert("L")
    grey.save(OUT / "grey.jpg", quality=95)
    Image.open(OUT / "grey.jpg").convert("RGB").save(OUT / "grey-pillow.png")
    assert Image.open(OUT / "grey.jpg").mode == "L"

    src = pattern(61, 47, 3)
    src.save(OUT / "resize-src.png")
    src.resize((23, 19), Image.BILINEAR).save(OUT / "resize-down.png")
    src.resize((150, 101), Image.BILINEAR).save(OUT / "resize-up.png")
    src.crop((5, 7, 45, 37)).resize((24, 24), Image.BILINEAR).save(OUT / "resize-crop.png")


if __name__ == "__main__":
    main()
