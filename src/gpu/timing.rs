//! GPU timing with timestamp queries (inside a pass where the adapter allows it, else one pass
//! per timed dispatch), wall clock where the adapter has no timestamps; and the per-kernel
//! breakdown of a step or a forward that `rbnn bench` prints for training and the packed engine.

use super::{Dispatch, Gpu};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::time::Instant;

/// Reusable query set and buffers for timing up to `capacity` dispatches at once.
pub struct GpuTimer {
    queries: Option<(wgpu::QuerySet, wgpu::Buffer, wgpu::Buffer)>,
    capacity: u32,
    inside_passes: bool,
}

/// Seconds spent in each dispatch, in order, and the total.
pub struct TimedDispatches {
    pub seconds: Vec<f64>,
    pub total: f64,
    /// "timestamp" or "wall clock".
    pub method: &'static str,
}

impl GpuTimer {
    pub fn new(gpu: &Gpu, capacity: u32) -> GpuTimer {
        let inside_passes = gpu
            .features
            .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        let queries = gpu.has_timestamps().then(|| {
            let count = 2 * capacity;
            let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("timer"),
                ty: wgpu::QueryType::Timestamp,
                count,
            });
            let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timer resolve"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let read = gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("timer read"),
                size: count as u64 * 8,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            (set, resolve, read)
        });
        GpuTimer {
            queries,
            capacity,
            inside_passes,
        }
    }

    pub fn method(&self) -> &'static str {
        if self.queries.is_some() {
            "timestamp"
        } else {
            "wall clock"
        }
    }

    /// Runs `groups` once, each group timed as a whole (groups of one dispatch time kernels;
    /// a group of a whole step times the step). Returns seconds per group.
    pub fn time_groups(&self, gpu: &Gpu, groups: &[Vec<&Dispatch>]) -> Result<TimedDispatches> {
        assert!(groups.len() as u32 <= self.capacity, "timer capacity");
        let Some((set, resolve, read)) = &self.queries else {
            let mut seconds = Vec::new();
            for g in groups {
                let start = Instant::now();
                gpu.run(g)?;
                seconds.push(start.elapsed().as_secs_f64());
            }
            let total = seconds.iter().sum();
            return Ok(TimedDispatches {
                seconds,
                total,
                method: "wall clock",
            });
        };
        let mut encoder = gpu
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("timed"),
            });
        if self.inside_passes {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("timed"),
                timestamp_writes: None,
            });
            for (i, g) in groups.iter().enumerate() {
                pass.write_timestamp(set, 2 * i as u32);
                for d in g {
                    d.record(&mut pass);
                }
                pass.write_timestamp(set, 2 * i as u32 + 1);
            }
        } else {
            for (i, g) in groups.iter().enumerate() {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("timed"),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set: set,
                        beginning_of_pass_write_index: Some(2 * i as u32),
                        end_of_pass_write_index: Some(2 * i as u32 + 1),
                    }),
                });
                for d in g {
                    d.record(&mut pass);
                }
            }
        }
        let n = 2 * groups.len() as u32;
        encoder.resolve_query_set(set, 0..n, resolve, 0);
        encoder.copy_buffer_to_buffer(resolve, 0, read, 0, n as u64 * 8);
        gpu.queue.submit([encoder.finish()]);
        let slice = read.slice(..n as u64 * 8);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        gpu.wait()?;
        rx.recv()
            .map_err(|_| anyhow!("timer map callback lost"))?
            .map_err(|e| anyhow!("timer readback: {e}"))?;
        let ticks: Vec<u64> = {
            let view = slice.get_mapped_range().map_err(|e| anyhow!("{e}"))?;
            bytemuck::cast_slice::<u8, u64>(&view).to_vec()
        };
        read.unmap();
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        let seconds: Vec<f64> = (0..groups.len())
            .map(|i| ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period)
            .collect();
        let total = seconds.iter().sum();
        Ok(TimedDispatches {
            seconds,
            total,
            method: "timestamp",
        })
    }
}

/// One kernel (shader entry point) in a per-kernel breakdown of a training step or a forward.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelShare {
    /// "shader::entry".
    pub kernel: String,
    /// Dispatches of this kernel in one step.
    pub dispatches: usize,
    pub seconds: f64,
    /// Share of the step's summed kernel time.
    pub share: f64,
    /// GFLOP/s (2 per multiply-add) of the convolution kernels; None for the others.
    pub gflops: Option<f64>,
    /// GB/s over the bytes of the buffers each dispatch binds (each counted once).
    pub gbps: f64,
}

/// Times each of `dispatches` on its own (timestamp queries where the adapter has them) and sums
/// the times by kernel, largest first; with how they were timed.
pub fn breakdown(gpu: &Gpu, dispatches: &[&Dispatch]) -> Result<(Vec<KernelShare>, String)> {
    let timer = GpuTimer::new(gpu, dispatches.len() as u32);
    let groups: Vec<Vec<&Dispatch>> = dispatches.iter().map(|d| vec![*d]).collect();
    let timed = timer.time_groups(gpu, &groups)?;
    let mut by_kernel: BTreeMap<String, (usize, f64, f64, u64)> = BTreeMap::new();
    for (d, s) in dispatches.iter().zip(&timed.seconds) {
        let name = d.label();
        let name = name.split('[').next().unwrap_or(name).to_string();
        let e = by_kernel.entry(name).or_default();
        e.0 += 1;
        e.1 += s;
        e.2 += d.flop;
        e.3 += d.bytes;
    }
    let mut shares: Vec<KernelShare> = by_kernel
        .into_iter()
        .map(|(kernel, (dispatches, seconds, flop, bytes))| {
            let seconds_or_tiny = seconds.max(1e-30);
            KernelShare {
                kernel,
                dispatches,
                seconds,
                share: seconds / timed.total.max(1e-30),
                gflops: (flop > 0.0).then(|| flop / seconds_or_tiny * 1e-9),
                gbps: bytes as f64 / seconds_or_tiny * 1e-9,
            }
        })
        .collect();
    shares.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    Ok((shares, timed.method.to_string()))
}

/// A breakdown as an indented table.
pub fn format_breakdown(title: &str, method: &str, shares: &[KernelShare]) -> String {
    let mut out = format!(
        "  {title} ({method}):\n  {:<40} {:>5} {:>9} {:>7} {:>9} {:>8}\n",
        "kernel", "calls", "ms", "share", "GFLOP/s", "GB/s"
    );
    for k in shares {
        let gflops = k.gflops.map_or("-".to_string(), |g| format!("{g:.0}"));
        out += &format!(
            "  {:<40} {:>5} {:>9.3} {:>6.1}% {:>9} {:>8.1}\n",
            k.kernel,
            k.dispatches,
            k.seconds * 1e3,
            100.0 * k.share,
            gflops,
            k.gbps
        );
    }
    out
}
