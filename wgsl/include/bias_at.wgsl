// Slot j's bias at output i_o, 0 without one (p.has_bias, bindings bias0..bias3).
fn bias_at(j: u32, i_o: u32) -> f32 {
  if (p.has_bias[j] == 0u) {
    return 0.0;
  }
  switch j {
    case 0u: {
      return bias0[i_o];
    }
    case 1u: {
      return bias1[i_o];
    }
    case 2u: {
      return bias2[i_o];
    }
    default: {
      return bias3[i_o];
    }
  }
}
