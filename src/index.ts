/** open-autoglm: the public API. Subpaths: open-autoglm/tensor, open-autoglm/nn, open-autoglm/backend. */
export * from './errors.js';
export * from './tensor/index.js';
export * from './nn/index.js';
export * from './optim/index.js';
export { backend, setBackend, getBackend, nativeAvailable } from './backend/index.js';
