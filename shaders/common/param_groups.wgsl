// defines: GroupScales: the per-group multipliers of the optimizer steps (sgd.wgsl, adam.wgsl),
// built on the host by ops::param_groups::ParamGroups.
//
// Every element of a parameter arena belongs to one group (a u32 per element, the arena's
// layout); the step multiplies its learning rate by the group's `lr` and its weight decay by
// the group's `decay`. A scale of exactly 1 leaves the product's bits as they were, so one group
// of (1, 1) is the plain optimizer.
struct GroupScales {
    lr: f32,
    decay: f32,
}
