// defines: flat, the element index of a 1D grid of 256-lane workgroups, split over x and y where
// x would pass 65535 workgroups (gpu::grid_1d builds the grid); nchw, an element's coordinates.
fn flat(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// (n, c, y, x) of element i of a row-major [N, C, H, W] tensor with c channels of h x w.
fn nchw(i: u32, c: u32, h: u32, w: u32) -> vec4<u32> {
    let t = i / w;
    let t2 = t / h;
    return vec4<u32>(t2 / c, t2 % c, t % h, i % w);
}
