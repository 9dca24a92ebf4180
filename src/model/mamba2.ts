/**
 * The Mamba-2 block (SSD), as in the Mamba-2 paper and HF Mamba2Mixer:
 * RMSNorm -> in_proj -> (z, xBC, dt); xBC -> causal depthwise conv -> SiLU -> (x, B, C);
 * dt = clamp(softplus(dt + dt_bias)); SSD scan with a scalar A per head, + D*x;
 * gated RMSNorm (normalize y * silu(z) per group); out_proj; + residual.
 *
 * The depthwise conv acts on each channel alone, so x, B and C are convolved separately (their conv
 * weights split at load): the same numbers without strided views.
 *
 * @module
 */

import type { ModelConfig } from "../config.ts";
import type { Backend, Tensor } from "../backends/backend.ts";
import { negExp, rows, type WeightReader } from "./weights.ts";

export interface Mamba2Weights {
  norm: Tensor; // (d)
  inZ: Tensor; // (di, d)
  inX: Tensor; // (di, d)
  inB: Tensor; // (g*n, d)
  inC: Tensor; // (g*n, d)
  inDt: Tensor; // (h, d)
  inBias?: { z: Tensor; x: Tensor; B: Tensor; C: Tensor; dt: Tensor };
  convX: Tensor; // (di, k)
  convB: Tensor; // (g*n, k)
  convC: Tensor; // (g*n, k)
  convBias?: { x: Tensor; B: Tensor; C: Tensor };
  dtBias: Tensor; // (h)
  A: Tensor; // (h)
  D: Tensor; // (h)
  gateNorm: Tensor; // (di)
  out: Tensor; // (d, di)
  outBias?: Tensor; // (d)
}

export interface Mamba2Scratch {
  xn: Tensor; // (m, d)
  z: Tensor; // (b, l, di)
  x: Tensor; // (b, l, di)
  B: Tensor; // (b, l, g*n)
  C: Tensor; // (b, l, g*n)
  dt: Tensor; // (b, l, h)
  xc: Tensor; // (b, l, h, p)
  Bc: Tensor; // (b, l, g, n)
  Cc: Tensor; // (b, l, g, n)
  y: Tensor; // (b, l, h, p)
  o: Tensor; // (m, d)
}

export interface Mamba2LayerState {
  convX: Tensor; // (b, di, k-1)
  convB: Tensor; // (b, g*n, k-1)
  convC: Tensor; // (b, g*n, k-1)
  ssm: Tensor; // (b, h, p, n)
}

export function loadMamba2Layer(be: Backend, w: WeightReader, c: ModelConfig, i: number): Mamba2Weights {
  const { dModel: d, dInner: di, dState: n, dConv: k, nHeads: h, nGroups: g } = c;
  const gn = g * n;
  const p = `backbone.layers.${i}.`;
  const mx = `${p}mixer.`;
  const rowsIn = 2 * di + 2 * gn + h;
  const inProj = w.get(`${mx}in_proj.weight`, [rowsIn, d]); // (z, x, B, C, dt)
  const cuts = [0, di, 2 * di, 2 * di + gn, 2 * di + 2 * gn, rowsIn];
  const part = (j: number, cols: number, src: Float32Array) => rows(src, cols, cuts[j], cuts[j + 1]);
  const inBias = c.bias ? w.get(`${mx}in_proj.bias`, [rowsIn]) : undefined;
  const conv = w.get(`${mx}conv1d.weight`, [di + 2 * gn, 1, k]); // (x, B, C)
  const convBias = c.convBias ? w.get(`${mx}conv1d.bias`, [di + 2 * gn]) : undefined;
  const convPart = (from: number, to: number) => rows(conv, k, from, to);
  const outBias = c.bias ? w.get(`${mx}out_proj.bias`, [d]) : undefined;
  return {
    norm: be.upload(w.get(`${p}norm.weight`, [d]), [d]),
    inZ: be.uploadMatrix(part(0, d, inProj), [di, d]),
    inX: be.uploadMatrix(part(1, d, inProj), [di, d]),
    inB: be.uploadMatrix(part(2, d, inProj), [gn, d]),
    inC: be.uploadMatrix(part(3, d, inProj), [gn, d]),
    inDt: be.uploadMatrix(part(4, d, inProj), [h, d]),
    inBias: inBias && {
      z: be.upload(part(0, 1, inBias), [di]),
      x: be.upload(part(1, 1, inBias), [di]),
      B: be.upload(part(2, 1, inBias), [gn]),
      C: be.upload(part(3, 1, inBias), [gn]),
      dt: be.upload(part(4, 1, inBias), [h]),
    },
    convX: be.upload(convPart(0, di), [di, k]),
    convB: be.upload(convPart(di, di + gn), [gn, k]),
    convC: be.upload(convPart(di + gn, di + 2 * gn), [gn, k]),
    convBias: convBias && {
      x: be.upload(convBias.subarray(0, di), [di]),
      B: be.upload(convBias.subarray(di, di + gn), [gn]),
      C: be.upload(convBias.subarray(di + gn), [gn]),
    },
    dtBias: be.upload(w.get(`${mx}dt_bias`, [h]), [h]),
    A: be.upload(negExp(w.get(`${mx}A_log`, [h])), [h]),
    D: be.upload(w.get(`${mx}D`, [h]), [h]),
    gateNorm: be.upload(w.get(`${mx}norm.weight`, [di]), [di]),
    out: be.uploadMatrix(w.get(`${mx}out_proj.weight`, [d, di]), [d, di]),
    outBias: outBias && be.upload(outBias, [d]),
  };
}

export function mamba2Scratch(be: Backend, c: ModelConfig, b: number, l: number): Mamba2Scratch {
  const { dModel: d, dInner: di, dState: n, nHeads: h, headDim: p, nGroups: g } = c;
  return {
    xn: be.zeros([b * l, d]),
    z: be.zeros([b, l, di]),
    x: be.zeros([b, l, di]),
    B: be.zeros([b, l, g * n]),
    C: be.zeros([b, l, g * n]),
    dt: be.zeros([b, l, h]),
    xc: be.zeros([b, l, h, p]),
    Bc: be.zeros([b, l, g, n]),
    Cc: be.zeros([b, l, g, n]),
    y: be.zeros([b, l, h, p]),
    o: be.zeros([b * l, d]),
  };
}

export function mamba2State(be: Backend, c: ModelConfig, b: number): Mamba2LayerState {
  const { dInner: di, dState: n, dConv: k, nHeads: h, headDim: p, nGroups: g } = c;
  return {
    convX: be.zeros([b, di, k - 1]),
    convB: be.zeros([b, g * n, k - 1]),
    convC: be.zeros([b, g * n, k - 1]),
    ssm: be.zeros([b, h, p, n]),
  };
}

/** hidden (b, l, d) += mixer(norm(hidden)), updating the layer's state. */
export function mamba2Block(
  be: Backend,
  c: ModelConfig,
  w: Mamba2Weights,
  s: Mamba2Scratch,
  st: Mamba2LayerState,
  hidden: Tensor,
): void {
  const { dInner: di, nGroups: g } = c;
  be.rmsNorm(s.xn, hidden, w.norm, c.normEps); // (m, d)
  be.linear(s.z, w.inZ, s.xn, w.inBias?.z); // (m, di) <- (di, d) @ (m, d)
  be.linear(s.x, w.inX, s.xn, w.inBias?.x); // (m, di)
  be.linear(s.B, w.inB, s.xn, w.inBias?.B); // (m, g*n)
  be.linear(s.C, w.inC, s.xn, w.inBias?.C); // (m, g*n)
  be.linear(s.dt, w.inDt, s.xn, w.inBias?.dt); // (m, h)
  be.conv1dSilu(s.xc, s.x, w.convX, w.convBias?.x, st.convX); // (b, l, di) = (b, l, h, p)
  be.conv1dSilu(s.Bc, s.B, w.convB, w.convBias?.B, st.convB); // (b, l, g*n)
  be.conv1dSilu(s.Cc, s.C, w.convC, w.convBias?.C, st.convC); // (b, l, g*n)
  be.ssdScan({
    y: s.y,
    x: s.xc,
    dt: s.dt,
    dtBias: w.dtBias,
    dtMin: c.dtLimit[0],
    dtMax: c.dtLimit[1],
    A: w.A,
    B: s.Bc,
    C: s.Cc,
    D: w.D,
    state: st.ssm,
    chunkSize: c.chunkSize,
  }); // (b, l, h, p)
  be.gatedRmsNorm(s.y, s.y, s.z, w.gateNorm, c.normEps, di / g); // (m, di)
  be.linear(s.o, w.out, s.y, w.outBias); // (m, d) <- (d, di) @ (m, di)
  be.add(hidden, hidden, s.o); // (b, l, d)
}
