// Matrix slot j's vec4 idx (bindings w0..w3 of vec4<u32>).
fn w_at(j: u32, idx: u32) -> vec4<u32> {
  switch j {
    case 0u: {
      return w0[idx];
    }
    case 1u: {
      return w1[idx];
    }
    case 2u: {
      return w2[idx];
    }
    default: {
      return w3[idx];
    }
  }
}
