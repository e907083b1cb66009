/**
 * Fused neural-network kernels: softmax, layer/RMS norm, embedding gather/scatter, cross-entropy, rotary
 * embeddings. Row statistics (sums, means, variances) accumulate in float64.
 */

export function softmax(x: Float32Array, rows: number, cols: number, out: Float32Array, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let max = -Infinity;
    for (let c = 0; c < cols; c++) if (x[o + c] > max) max = x[o + c];
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += Math.exp(x[o + c] - max);
    if (log) {
      const lse = max + Math.log(sum);
      for (let c = 0; c < cols; c++) out[o + c] = x[o + c] - lse;
    } else {
      const inv = 1 / sum;
      for (let c = 0; c < cols; c++) out[o + c] = Math.exp(x[o + c] - max) * inv;
    }
  }
}

export function softmaxBackward(y: Float32Array, dy: Float32Array, rows: number, cols: number, dx: Float32Array, log: boolean): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    if (log) {
      for (let c = 0; c < cols; c++) s += dy[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = dy[o + c] - Math.exp(y[o + c]) * s;
    } else {
      for (let c = 0; c < cols; c++) s += dy[o + c] * y[o + c];
      for (let c = 0; c < cols; c++) dx[o + c] = y[o + c] * (dy[o + c] - s);
    }
  }
}

export function layerNorm(x: Float32Array, gamma: Float32Array | null, beta: Float32Array | null, rows: number, cols: number,
  eps: number, out: Float32Array, mean: Float32Array, rstd: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[o + c];
    const mu = s / cols;
    let v = 0;
    for (let c = 0; c < cols; c++) {
      const d = x[o + c] - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / cols + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < cols; c++) {
      let y = (x[o + c] - mu) * rs;
      if (gamma) y *= gamma[c];
      if (beta) y += beta[c];
      out[o + c] = y;
    }
  }
}

export function layerNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, mean: Float32Array,
  rstd: Float32Array, rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
  normBackwardRows(true, dy, gamma, rstd, rows, cols, dx, dgamma, dbeta, (r, xh) => {
    const o = r * cols, mu = mean[r], rs = rstd[r];
    for (let c = 0; c < cols; c++) xh[c] = (x[o + c] - mu) * rs;
  });
}

/** layerNormBackward from the output y: xhat = (y - beta) / gamma. */
export function layerNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, beta: Float32Array | null,
  rstd: Float32Array, rows: number, cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null): void {
  normBackwardRows(true, dy, gamma, rstd, rows, cols, dx, dgamma, dbeta, (r, xh) => {
    const o = r * cols;
    for (let c = 0; c < cols; c++) xh[c] = (beta ? y[o + c] - beta[c] : y[o + c]) / gamma[c];
  });
}

/**
 * The backward pass of LayerNorm (`centered`) or RMSNorm, with xhat per row from `xhatRow`; g = dy * gamma.
 * LayerNorm: dx = rstd * (g - mean(g) - xhat * mean(g * xhat)); RMSNorm: dx = rstd * (g - xhat * mean(g * xhat)).
 */
function normBackwardRows(centered: boolean, dy: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number,
  cols: number, dx: Float32Array, dgamma: Float32Array | null, dbeta: Float32Array | null,
  xhatRow: (r: number, xh: Float64Array) => void): void {
  const dg = dgamma ? new Float64Array(cols) : null;
  const db = dbeta ? new Float64Array(cols) : null;
  const xh = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const rs = rstd[r];
    xhatRow(r, xh);
    let sg = 0;
    let sgx = 0;
    for (let c = 0; c < cols; c++) {
      const g = gamma ? dy[o + c] * gamma[c] : dy[o + c];
      sg += g;
      sgx += g * xh[c];
      if (dg) dg[c] += dy[o + c] * xh[c];
      if (db) db[c] += dy[o + c];
    }
    const mg = centered ? sg / cols : 0;
    const mgx = sgx / cols;
    for (let c = 0; c < cols; c++) {
      const g = gamma ? dy[o + c] * gamma[c] : dy[o + c];
      dx[o + c] = rs * (g - mg - xh[c] * mgx);
    }
  }
  if (dgamma && dg) for (let c = 0; c < cols; c++) dgamma[c] += dg[c];
  if (dbeta && db) for (let c = 0; c < cols; c++) dbeta[c] += db[c];
}

export function rmsNorm(x: Float32Array, gamma: Float32Array | null, rows: number, cols: number, eps: number, out: Float32Array,
  rstd: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[o + c] * x[o + c];
    const rs = 1 / Math.sqrt(s / cols + eps);
    rstd[r] = rs;
    if (gamma) for (let c = 0; c < cols; c++) out[o + c] = x[o + c] * rs * gamma[c];
    else for (let c = 0; c < cols; c++) out[o + c] = x[o + c] * rs;
  }
}

export function rmsNormBackward(dy: Float32Array, x: Float32Array, gamma: Float32Array | null, rstd: Float32Array, rows: number,
  cols: number, dx: Float32Array, dgamma: Float32Array | null): void {
  normBackwardRows(false, dy, gamma, rstd, rows, cols, dx, dgamma, null, (r, xh) => {
    const o = r * cols, rs = rstd[r];
    for (let c = 0; c < cols; c++) xh[c] = x[o + c] * rs;
  });
}

/** rmsNormBackward from the output y: xhat = y / gamma. */
export function rmsNormBackwardFromOutput(dy: Float32Array, y: Float32Array, gamma: Float32Array, rstd: Float32Array, rows: number,
  cols: number, dx: Float32Array, dgamma: Float32Array | null): void {
  normBackwardRows(false, dy, gamma, rstd, rows, cols, dx, dgamma, null, (r, xh) => {
    const o = r * cols;
    for (let c = 0; c < cols; c++) xh[c] = y[o + c] / gamma[c];
  });
}

export function gather(table: Float32Array, idx: Int32Array, cols: number, out: Float32Array): void {
  for (let i = 0; i < idx.length; i++) {
    const s = idx[i] * cols;
    out.set(table.subarray(s, s + cols), i * cols);
  }
}

export function scatterAdd(src: Float32Array, idx: Int32Array, cols: number, dtable: Float32Array): void {
  for (let i = 0; i < idx.length; i++) {
    const d = idx[i] * cols;
    const s = i * cols;
    for (let c = 0; c < cols; c++) dtable[d + c] += src[s + c];
  }
}

export function crossEntropy(logits: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number, ls: number,
  loss: Float32Array, logp: Float32Array): void {
  softmax(logits, rows, cols, logp, true);
  for (let r = 0; r < rows; r++) {
    const t = targets[r];
    if (t === ignoreIndex) {
      loss[r] = 0;
      continue;
    }
    const o = r * cols;
    let l = -(1 - ls) * logp[o + t];
    if (ls !== 0) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += logp[o + c];
      l -= (ls / cols) * s;
    }
    loss[r] = l;
  }
}

export function crossEntropyBackward(logp: Float32Array, targets: Int32Array, rows: number, cols: number, ignoreIndex: number,
  ls: number, dloss: Float32Array, dlogits: Float32Array): void {
  const off = ls / cols;
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    const t = targets[r];
    if (t === ignoreIndex) {
      dlogits.fill(0, o, o + cols);
      continue;
    }
    const g = dloss[r], lt = logp[o + t]; // read before the loop: dlogits may alias logp
    for (let c = 0; c < cols; c++) dlogits[o + c] = g * (Math.exp(logp[o + c]) - off);
    dlogits[o + t] = g * (Math.exp(lt) - (1 - ls) - off);
  }
}

/** Rotary embedding, "rotate_half" layout; out may alias x. */
export function rope(x: Float32Array, cos: Float32Array, sin: Float32Array, rows: number, T: number, D: number, rotDim: number,
  inverse: boolean, out: Float32Array): void {
  const half = rotDim >> 1;
  const sgn = inverse ? -1 : 1;
  for (let r = 0; r < rows; r++) {
    for (let t = 0; t < T; t++) {
      const o = (r * T + t) * D;
      const cs = t * half;
      for (let i = 0; i < half; i++) {
        const c = cos[cs + i];
        const s = sgn * sin[cs + i];
        const x1 = x[o + i];
        const x2 = x[o + i + half];
        out[o + i] = x1 * c - x2 * s;
        out[o + i + half] = x2 * c + x1 * s;
      }
      if (out !== x) for (let i = rotDim; i < D; i++) out[o + i] = x[o + i];
    }
  }
}
