//! One sample's shapes through a description, checked layer by layer: channels that chain,
//! BatchNorms of the right width, residual sums of equal shapes, windows that fit, a classifier
//! that takes what the head gives it. Every consumer can then rely on the shapes; an input of
//! the wrong size is an error that names the layer.

use super::{Architecture, BatchNorm, Block, Conv, Head, Pool, Shortcut, Unit};
use anyhow::{bail, Result};

/// [C, H, W] of one sample.
pub type Chw = [usize; 3];

/// A conv and the shapes around it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTrace {
    pub conv: Conv,
    pub input: Chw,
    pub output: Chw,
}

/// The shapes of one sample through a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub input: Chw,
    /// Every conv in forward order (shortcut convs after their block's convs).
    pub convs: Vec<ConvTrace>,
    /// What enters the head.
    pub features: Chw,
}

impl Trace {
    /// Elements of the largest activation of one sample (the input included).
    pub fn largest_activation(&self) -> usize {
        let size = |[c, h, w]: Chw| c * h * w;
        self.convs
            .iter()
            .map(|t| size(t.output))
            .fold(size(self.input), usize::max)
    }
}

struct Tracer<'a> {
    arch: &'a Architecture,
    input: Chw,
    convs: Vec<ConvTrace>,
}

impl Tracer<'_> {
    fn conv(&mut self, conv: &Conv, x: Chw) -> Result<Chw> {
        let [c, h, w] = x;
        let model = self.arch.name;
        if conv.ci != c {
            bail!(
                "{model}: {} takes {} channels, its input has {c}",
                conv.name,
                conv.ci
            );
        }
        let (Some(oh), Some(ow)) = (conv.output_size(h), conv.output_size(w)) else {
            bail!(
                "{model}: the {h}x{w} input of {} is smaller than its {k}x{k} kernel",
                conv.name,
                k = conv.k
            );
        };
        let output = [conv.co, oh, ow];
        self.convs.push(ConvTrace {
            conv: conv.clone(),
            input: x,
            output,
        });
        Ok(output)
    }

    fn bn(&self, bn: &BatchNorm, c: usize) -> Result<()> {
        if bn.c != c {
            bail!(
                "{}: {} normalises {} channels, its input has {c}",
                self.arch.name,
                bn.name,
                bn.c
            );
        }
        Ok(())
    }

    fn pool(&self, pool: Pool, [c, h, w]: Chw, after: &str) -> Result<Chw> {
        match (pool.output_size(h), pool.output_size(w)) {
            (Some(oh), Some(ow)) => Ok([c, oh, ow]),
            _ => bail!(
                "{}: the {h}x{w} map after {after} is smaller than its {pool}",
                self.arch.name
            ),
        }
    }

    fn same(&self, what: &str, a: Chw, b: Chw) -> Result<()> {
        if a != b {
            bail!("{}: {what}: {a:?} and {b:?} differ", self.arch.name);
        }
        Ok(())
    }

    fn block(&mut self, b: &Block, x: Chw) -> Result<Chw> {
        let y1 = self.conv(&b.conv1, x)?;
        self.bn(&b.bn1, y1[0])?;
        let y2 = self.conv(&b.conv2, y1)?;
        self.bn(&b.bn2, y2[0])?;
        self.same(
            &format!(
                "{} and {} give the residual sums",
                b.conv1.name, b.conv2.name
            ),
            y1,
            y2,
        )?;
        let [c, h, w] = x;
        let shortcut = match &b.shortcut {
            Shortcut::Identity => x,
            Shortcut::OptionA => {
                if y1[0] < c || !(y1[0] - c).is_multiple_of(2) {
                    bail!(
                        "{}: the option-A shortcut around {} pads {c} channels to {}: the \
                         difference must be even and not negative",
                        self.arch.name,
                        b.conv1.name,
                        y1[0]
                    );
                }
                [y1[0], h.div_ceil(2), w.div_ceil(2)]
            }
            Shortcut::Projection { conv, bn } => {
                let s = self.conv(conv, x)?;
                self.bn(bn, s[0])?;
                s
            }
        };
        self.same(
            &format!("the shortcut around {} and the conv", b.conv1.name),
            shortcut,
            y1,
        )?;
        Ok(y2)
    }

    fn head(&self, head: &Head, x: Chw) -> Result<()> {
        let model = self.arch.name;
        let features = match head {
            Head::PoolNormLinear { pool, bn, linear } => {
                let [c, h, w] = self.pool(*pool, x, "the body")?;
                if (h, w) != (1, 1) {
                    bail!(
                        "{model}: the head's {pool} leaves {h}x{w} of the {}x{} map, not 1x1",
                        x[1],
                        x[2]
                    );
                }
                self.bn(bn, c)?;
                if linear.fin != c {
                    bail!(
                        "{model}: {} takes {} features, gets {c}",
                        linear.name,
                        linear.fin
                    );
                }
                return Ok(());
            }
            Head::FlattenLinear { linear } => linear,
        };
        let [c, h, w] = x;
        if features.fin != c * h * w {
            bail!(
                "{model}: {} takes {} features, a {}x{} input gives {c} x {h} x {w} = {}",
                features.name,
                features.fin,
                self.input[1],
                self.input[2],
                c * h * w
            );
        }
        Ok(())
    }
}

impl Architecture {
    /// Follows one sample of shape `input` [C, H, W] through the model, checking every layer.
    pub fn trace(&self, input: Chw) -> Result<Trace> {
        let mut t = Tracer {
            arch: self,
            input,
            convs: Vec::new(),
        };
        let mut x = t.conv(&self.stem.conv, input)?;
        t.bn(&self.stem.bn, x[0])?;
        if let Some(pool) = self.stem.pool {
            x = t.pool(pool, x, &self.stem.bn.name)?;
        }
        for unit in &self.body {
            x = match unit {
                Unit::Block(b) => t.block(b, x)?,
                Unit::Plain { conv, pool, bn } => {
                    let mut y = t.conv(conv, x)?;
                    if let Some(pool) = pool {
                        y = t.pool(*pool, y, &conv.name)?;
                    }
                    t.bn(bn, y[0])?;
                    y
                }
            };
        }
        t.head(&self.head, x)?;
        Ok(Trace {
            input,
            convs: t.convs,
            features: x,
        })
    }
}
