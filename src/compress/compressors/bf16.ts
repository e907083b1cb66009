/** bfloat16 (f32's exponent, 7 mantissa bits): relative error <= 2^-8, the full f32 range. */
import { HalfCompressor } from './half.js';

export const makeBf16 = (): HalfCompressor => new HalfCompressor('bf16', 2, 'bf16');
