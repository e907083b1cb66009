/** The portable (plain TypeScript) backend; the kernels live in ./portable/, one file per kernel family. */
export { PortableBackend } from './portable/index.js';
