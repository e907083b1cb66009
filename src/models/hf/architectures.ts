/** The architecture families the Hugging Face loader knows, registered by model_type (one folder each). */
import { registerFamily } from './family.js';
import { gpt2Family } from '../gpt2/model.js';
import { llamaFamily } from '../llama/model.js';
import { bertFamily } from '../bert/model.js';
import { glmFamily } from '../glm/model.js';

registerFamily(gpt2Family);
registerFamily(llamaFamily);
registerFamily(bertFamily);
registerFamily(glmFamily);
