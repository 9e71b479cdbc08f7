//! One picture file's bytes -> RGB pixels (interleaved u8, row-major), as PIL's
//! `Image.open(f).convert("RGB")` gives them to torchvision.
//!
//! JPEG (read from the content, not the name) goes through zune-jpeg with its SIMD paths, into a
//! buffer the caller reuses; greyscale is replicated to RGB; CMYK and YCCK (Adobe) are converted
//! as PIL does (R = (255 - C)(255 - K)/255 on the un-inverted values). zune-jpeg, like libjpeg,
//! decodes a stream that is damaged in the middle as best it can, but a file cut short is an error
//! here, as in PIL ("image file is truncated"): the bytes after the first scan must hold an
//! end-of-image marker. Anything else (a PNG named .JPEG, as ImageNet has one) is decoded by the
//! `image` crate.

use anyhow::{anyhow, bail, Result};
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;
use zune_jpeg::JpegDecoder;

/// Decoded pixels: `rgb` holds `height` rows of `width` RGB triples.
#[derive(Clone, Debug, Default)]
pub struct Rgb8 {
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// Whether the bytes start like a JPEG (SOI marker).
fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// Whether a JPEG stream ends: walks the header segments to the first start-of-scan (so an
/// end-of-image marker inside an EXIF thumbnail does not count) and looks for the end-of-image
/// marker after it. Entropy-coded data never contains 0xFF 0xD9 (a 0xFF byte is stuffed as
/// 0xFF 0x00), so its presence means the last scan was not cut off.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let mut pos = 2;
    while pos + 4 <= bytes.len() {
        if bytes[pos] != 0xFF {
            // Not at a marker: malformed headers, which the decoder reports.
            return true;
        }
        let marker = bytes[pos + 1];
        match marker {
            0xFF => pos += 1,
            0xDA => {
                return bytes[pos..].windows(2).rev().any(|w| w == [0xFF, 0xD9]);
            }
            0x01 | 0xD0..=0xD7 => pos += 2,
            _ => {
                let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
                pos += 2 + len;
            }
        }
    }
    false
}

/// Decodes `bytes` into `out` (its buffer is reused). Errors say what is wrong, not which file:
/// the caller names the file.
pub fn decode_rgb(bytes: &[u8], out: &mut Rgb8) -> Result<()> {
    if is_jpeg(bytes) {
        return decode_jpeg(bytes, out);
    }
    let img = image::load_from_memory(bytes).map_err(|e| anyhow!("not a readable image: {e}"))?;
    let rgb = img.into_rgb8();
    out.width = rgb.width() as usize;
    out.height = rgb.height() as usize;
    out.rgb = rgb.into_raw();
    Ok(())
}

fn decode_jpeg(bytes: &[u8], out: &mut Rgb8) -> Result<()> {
    let options = DecoderOptions::new_fast().jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder
        .decode_headers()
        .map_err(|e| anyhow!("not a readable JPEG: {e:?}"))?;
    let info = decoder
        .info()
        .ok_or_else(|| anyhow!("not a readable JPEG: no frame header"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    if width == 0 || height == 0 {
        bail!("not a readable JPEG: its size is {width}x{height}");
    }
    if !jpeg_has_end(bytes) {
        bail!(
            "truncated JPEG ({width}x{height}, {} bytes): no end-of-image marker after the scan \
             data",
            bytes.len()
        );
    }
    let len = decoder
        .output_buffer_size()
        .ok_or_else(|| anyhow!("not a readable JPEG: unknown output size"))?;
    if len != width * height * 3 {
        bail!("JPEG decoder gave {len} bytes for {width}x{height} RGB");
    }
    out.rgb.resize(len, 0);
    decoder
        .decode_into(&mut out.rgb)
        .map_err(|e| anyhow!("corrupt JPEG ({width}x{height}): {e:?}"))?;
    out.width = width;
    out.height = height;
    Ok(())
}
