// defines: DIRECT_GROUPS, LaneIds, GroupLane, group_lane, DirectTile, direct_tile, lanes8: the groups of 8
// subgroup lanes of the direct kernels (conv_direct.wgsl; binconv.wgsl's direct), and the
// output tile each group computes in the gather kernels.
//
// lavapipe (and CPUs generally) pay for every load that differs between lanes: each one becomes a
// loop over the 8 lanes, costing as much as dozens of multiply-adds, and workgroup memory is no
// cheaper than a buffer. The direct kernels therefore load each value once per group of 8
// subgroup lanes and hand it to the other lanes with subgroupShuffle (one vector permute there, a
// register shuffle on GPUs), and keep their whole tile in registers. A group is 8 consecutive
// lanes of one subgroup; a workgroup of 64 invocations holds DIRECT_GROUPS of them. The host
// (ops::conv::direct_supported) checks that subgroup sizes are multiples of 8 up to 64.

const DIRECT_GROUPS: u32 = 8u;

// The builtins every direct kernel takes (its entry point's one parameter).
struct LaneIds {
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(subgroup_invocation_id) sg_lane: u32,
    @builtin(subgroup_id) sg_id: u32,
    @builtin(subgroup_size) sg_size: u32,
}

// Lane (0..8) within its group, the group's first subgroup lane, and the group's index over the
// whole grid (1D, split over x and y).
struct GroupLane {
    lane: u32,
    base: u32,
    group: u32,
}

fn group_lane(ids: LaneIds) -> GroupLane {
    let in_workgroup = ids.sg_id * (ids.sg_size / 8u) + ids.sg_lane / 8u;
    return GroupLane(
        ids.sg_lane & 7u,
        ids.sg_lane & ~7u,
        (ids.wid.x + ids.wid.y * ids.nwg.x) * DIRECT_GROUPS + in_workgroup,
    );
}

// The work of one group in a gather kernel: 8 output channels (one per lane) of the 8x8 output
// tile at (ty0, tx0) of image img, channel blocks fastest; groups past the last tile repeat its
// work with `ok` false.
struct DirectTile {
    img: u32,
    ty0: u32,
    tx0: u32,
    // This lane's output channel, and whether it exists (and the group is not past the end).
    oc: u32,
    ok: bool,
}

fn direct_tile(gl: GroupLane, n: u32, c_out: u32, h_out: u32, w_out: u32) -> DirectTile {
    let tiles_x = (w_out + 7u) / 8u;
    let tiles_y = (h_out + 7u) / 8u;
    let cblocks = (c_out + 7u) / 8u;
    let total = n * tiles_y * tiles_x * cblocks;
    let g = gl.group;
    let gc = min(g, total - 1u);
    let cb = gc % cblocks;
    var t = gc / cblocks;
    let tx0 = (t % tiles_x) * 8u;
    t /= tiles_x;
    let ty0 = (t % tiles_y) * 8u;
    let oc = cb * 8u + gl.lane;
    return DirectTile(t / tiles_y, ty0, tx0, oc, oc < c_out && g < total);
}

// Every lane's v in every lane: lanes8(v)[i] is lane i's v. For subgroups of exactly 8 lanes only
// (a group is then its whole subgroup; the vec4 kernels, ops::conv::direct::vec4_supported).
// subgroupBroadcast takes a constant lane, which lavapipe compiles to one vector permute per
// component, where a subgroupShuffle is a loop over the lanes. Broadcasts nobody reads are
// removed by the compiler. Call from uniform control flow.
fn lanes8(v: vec4<f32>) -> array<vec4<f32>, 8> {
    return array<vec4<f32>, 8>(
        subgroupBroadcast(v, 0u),
        subgroupBroadcast(v, 1u),
        subgroupBroadcast(v, 2u),
        subgroupBroadcast(v, 3u),
        subgroupBroadcast(v, 4u),
        subgroupBroadcast(v, 5u),
        subgroupBroadcast(v, 6u),
        subgroupBroadcast(v, 7u),
    );
}
