/** Registers the built-in named datasets (one file each). */
import { registerNamedDataset } from '../registry.js';
import { clinc150 } from './clinc150.js';
import { customIntentV2 } from './custom-intent-v2.js';
import { massiveEn } from './massive-en.js';
import { slurp } from './slurp.js';
import { snips } from './snips.js';

for (const ds of [clinc150, snips, massiveEn, slurp, customIntentV2]) registerNamedDataset(ds);
