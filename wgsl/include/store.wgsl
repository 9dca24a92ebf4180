// Writes v to slot j's output at idx (bindings out0..out3).
fn store(j: u32, idx: u32, v: f32) {
  switch j {
    case 0u: {
      out0[idx] = v;
    }
    case 1u: {
      out1[idx] = v;
    }
    case 2u: {
      out2[idx] = v;
    }
    default: {
      out3[idx] = v;
    }
  }
}
