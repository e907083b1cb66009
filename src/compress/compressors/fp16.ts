/** IEEE half precision (5 exponent bits, 10 mantissa bits): relative error <= 2^-11, range +-65504. */
import { HalfCompressor } from './half.js';

export const makeFp16 = (): HalfCompressor => new HalfCompressor('fp16', 1, 'f16');
