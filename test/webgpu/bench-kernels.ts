/**
 * The kernels that scripts/bench-webgpu.ts times on WebGPU and on a CPU backend, written once over either storage:
 * the transformer-block workload's shapes (B8 T128 d256 h4 ff1024) and a square GEMM.
 */
export interface BenchKit {
  rand(n: number): unknown;
  zeros(n: number): unknown;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  k: any;
}

export interface BenchKernel {
  name: string;
  flop: number;
  setup(kit: BenchKit): () => void;
}

const B = 8, T = 128, D = 256, H = 4, F = 1024;

function gemm(name: string, M: number, N: number, K: number, transB: boolean): BenchKernel {
  return {
    name, flop: 2 * M * N * K,
    setup({ rand, zeros, k }) {
      const a = rand(M * K), b = rand(K * N), out = zeros(M * N);
      return () => k.matmul({ a, b, out, dtype: 'f32', batch: 1, M, N, K, transA: false, transB, strideA: 0, strideB: 0, alpha: 1, beta: 0 });
    },
  };
}

export const KERNELS: BenchKernel[] = [
  gemm('gemm 1024x1024x1024', 1024, 1024, 1024, false),
  gemm('block ff1 (1024x1024x256, B^T)', B * T, F, D, true),
  gemm('block ff2 (1024x256x1024, B^T)', B * T, D, F, true),
  {
    name: 'block attention forward + backward (B8 H4 T128 d64, causal)', flop: 2 * 2 * B * H * T * T * (D / H) * 3.5,
    setup({ rand, zeros, k }) {
      const hd = D / H, n = B * H * T * hd;
      const st: [number, number, number] = [H * T * hd, T * hd, hd];
      const s = { B, H, Hkv: H, Tq: T, Tk: T, D: hd, Dv: hd, scale: 1 / Math.sqrt(hd), causal: true, qStrides: st, kStrides: st,
        vStrides: st, outStrides: st };
      const q = rand(n), kk = rand(n), v = rand(n), out = zeros(n), stats = zeros(B * H * T * 2), dout = rand(n);
      const dq = zeros(n), dk = zeros(n), dv = zeros(n);
      return () => {
        k.attention(s, q, kk, v, null, null, out, stats);
        k.attentionBackward(s, q, kk, v, null, null, stats, dout, st, dq, dk, dv);
      };
    },
  },
  {
    name: 'block layer norm forward + backward (1024 x 256)', flop: 0,
    setup({ rand, zeros, k }) {
      const x = rand(B * T * D), g = rand(D), b = rand(D), y = zeros(B * T * D), mu = zeros(B * T), rs = zeros(B * T), dx = zeros(B * T * D);
      const dg = zeros(D), db = zeros(D);
      return () => {
        k.layerNorm(x, g, b, B * T, D, 1e-5, y, mu, rs);
        k.layerNormBackward(y, x, g, mu, rs, B * T, D, dx, dg, db);
      };
    },
  },
  {
    name: 'AdamW over 1M parameters', flop: 0,
    setup({ rand, zeros, k }) {
      const n = 1 << 20, p = rand(n), g = rand(n), m = zeros(n), v = zeros(n);
      let step = 0;
      return () => k.adamw({ param: p, grad: g, m, v, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: ++step, gradScale: 1 });
    },
  },
];
