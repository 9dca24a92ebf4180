/**
 * The Mamba-1 block, as in the Mamba paper's figure and mamba-minimal:
 * RMSNorm -> in_proj -> (x, z); x -> causal depthwise conv -> SiLU -> x_proj -> (dt, B, C);
 * dt -> dt_proj -> softplus; selective scan; gate by silu(z); out_proj; + residual.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import type { Backend, Tensor } from "../backends/backend.ts";
import { negExp, rows, type WeightReader } from "./weights.ts";

/** One layer's weights on a backend. in_proj and x_proj are split by output rows at load. */
export interface Mamba1Weights {
  norm: Tensor; // (d)
  inX: Tensor; // (di, d)
  inZ: Tensor; // (di, d)
  inBiasX?: Tensor; // (di)
  inBiasZ?: Tensor; // (di)
  convW: Tensor; // (di, k)
  convB?: Tensor; // (di)
  xDt: Tensor; // (r, di)
  xB: Tensor; // (n, di)
  xC: Tensor; // (n, di)
  dtW: Tensor; // (di, r)
  dtB: Tensor; // (di)
  A: Tensor; // (di, n)
  D: Tensor; // (di)
  out: Tensor; // (d, di)
  outBias?: Tensor; // (d)
}

/** Activations of one call, for m = b*l rows. */
export interface Mamba1Scratch {
  xn: Tensor; // (m, d)
  x: Tensor; // (b, l, di)
  z: Tensor; // (b, l, di)
  xc: Tensor; // (b, l, di)
  dtLow: Tensor; // (m, r)
  B: Tensor; // (m, n)
  C: Tensor; // (m, n)
  dt: Tensor; // (b, l, di)
  y: Tensor; // (b, l, di)
  o: Tensor; // (m, d)
}

/** Recurrent state of one layer. */
export interface Mamba1LayerState {
  conv: Tensor; // (b, di, k-1)
  ssm: Tensor; // (b, di, n)
}

/** Loads layer `i` from either checkpoint layout. */
export function loadMamba1Layer(be: Backend, w: WeightReader, c: ModelConfig, i: number): Mamba1Weights {
  const { dModel: d, dInner: di, dState: n, dConv: k, dtRank: r } = c;
  const p = `backbone.layers.${i}.`;
  const mx = `${p}mixer.`;
  const inProj = w.get(`${mx}in_proj.weight`, [2 * di, d]);
  const inBias = c.bias ? w.get(`${mx}in_proj.bias`, [2 * di]) : undefined;
  const xProj = w.get(`${mx}x_proj.weight`, [r + 2 * n, di]);
  const outBias = c.bias ? w.get(`${mx}out_proj.bias`, [d]) : undefined;
  const convB = c.convBias ? w.get(`${mx}conv1d.bias`, [di]) : undefined;
  return {
    norm: be.upload(w.get(`${p}norm.weight`, [d]), [d]),
    inX: be.uploadMatrix(rows(inProj, d, 0, di), [di, d]),
    inZ: be.uploadMatrix(rows(inProj, d, di, 2 * di), [di, d]),
    inBiasX: inBias && be.upload(inBias.subarray(0, di), [di]),
    inBiasZ: inBias && be.upload(inBias.subarray(di), [di]),
    convW: be.upload(w.get(`${mx}conv1d.weight`, [di, 1, k]), [di, k]),
    convB: convB && be.upload(convB, [di]),
    xDt: be.uploadMatrix(rows(xProj, di, 0, r), [r, di]),
    xB: be.uploadMatrix(rows(xProj, di, r, r + n), [n, di]),
    xC: be.uploadMatrix(rows(xProj, di, r + n, r + 2 * n), [n, di]),
    dtW: be.uploadMatrix(w.get(`${mx}dt_proj.weight`, [di, r]), [di, r]),
    dtB: be.upload(w.get(`${mx}dt_proj.bias`, [di]), [di]),
    A: be.upload(negExp(w.get(`${mx}A_log`, [di, n])), [di, n]),
    D: be.upload(w.get(`${mx}D`, [di]), [di]),
    out: be.uploadMatrix(w.get(`${mx}out_proj.weight`, [d, di]), [d, di]),
    outBias: outBias && be.upload(outBias, [d]),
  };
}

export function mamba1Scratch(be: Backend, c: ModelConfig, b: number, l: number): Mamba1Scratch {
  const m = b * l;
  const { dModel: d, dInner: di, dState: n, dtRank: r } = c;
  return {
    xn: be.zeros([m, d]),
    x: be.zeros([b, l, di]),
    z: be.zeros([b, l, di]),
    xc: be.zeros([b, l, di]),
    dtLow: be.zeros([m, r]),
    B: be.zeros([m, n]),
    C: be.zeros([m, n]),
    dt: be.zeros([b, l, di]),
    y: be.zeros([b, l, di]),
    o: be.zeros([m, d]),
  };
}

export function mamba1State(be: Backend, c: ModelConfig, b: number): Mamba1LayerState {
  return { conv: be.zeros([b, c.dInner, c.dConv - 1]), ssm: be.zeros([b, c.dInner, c.dState]) };
}

/** hidden (b, l, d) += mixer(norm(hidden)), updating the layer's state. */
export function mamba1Block(
  be: Backend,
  c: ModelConfig,
  w: Mamba1Weights,
  s: Mamba1Scratch,
  st: Mamba1LayerState,
  hidden: Tensor,
): void {
  be.rmsNorm(s.xn, hidden, w.norm, c.normEps); // (m, d)
  be.linear(s.x, w.inX, s.xn, w.inBiasX); // (m, di) <- (di, d) @ (m, d)
  be.linear(s.z, w.inZ, s.xn, w.inBiasZ); // (m, di)
  be.conv1dSilu(s.xc, s.x, w.convW, w.convB, st.conv); // (b, l, di)
  be.linear(s.dtLow, w.xDt, s.xc); // (m, r)
  be.linear(s.B, w.xB, s.xc); // (m, n)
  be.linear(s.C, w.xC, s.xc); // (m, n)
  be.linear(s.dt, w.dtW, s.dtLow, w.dtB); // (m, di) <- (di, r) @ (m, r)
  be.selectiveScan({ y: s.y, x: s.xc, dt: s.dt, A: w.A, B: s.B, C: s.C, D: w.D, z: s.z, h: st.ssm }); // (b, l, di)
  be.linear(s.o, w.out, s.y, w.outBias); // (m, d) <- (d, di) @ (m, di)
  be.add(hidden, hidden, s.o); // (b, l, d)
}
