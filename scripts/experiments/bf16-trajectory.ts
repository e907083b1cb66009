// Prints the loss trajectories that test/bf16-trajectory.test.ts checks (block and cls-lora, bf16 and f32), for
// updating its stored values when a change legitimately changes bf16 bits (node --import tsx scripts/experiments/bf16-trajectory.ts).
import { blockTrajectory, clsLoraTrajectory } from '../../test/helpers/trajectories.js';

for (const dt of ['bf16', 'f32'] as const) console.log(JSON.stringify({ dt, block: blockTrajectory(dt), clsLora: clsLoraTrajectory(dt) }));
