/**
 * The `autoglm` command: a thin shell over the library. Each subcommand lives in commands/<name>.ts and
 * registers itself on the program; defaults live with the typed options they fill.
 */
import { Command, CommanderError } from 'commander';
import { AutoGLMError } from '../errors.js';
import { registerBench } from './commands/bench.js';
import { registerDemo } from './commands/demo.js';
import { registerEmbed } from './commands/embed.js';
import { registerGenerate } from './commands/generate.js';
import { registerFinetune } from './commands/finetune.js';
import { registerEvaluate } from './commands/evaluate.js';
import { registerMerge } from './commands/merge.js';
import { registerWeb } from './commands/web.js';
import { registerLaunch, rdzvOption, runIdOption } from './commands/launch.js';
import { setExitOnLostPeer } from '../distributed/gloo.js';

export function buildProgram(): Command {
  const program = new Command('autoglm')
    .description('Efficient fine-tuning of transformer language models on Node.js')
    .version('0.1.0')
    .showHelpAfterError()
    // for ranks that torchrun, mpirun, srun or Kubernetes started: where they meet (see src/distributed/launchers.ts)
    .option('--rdzv <url>', 'rendezvous store of ranks started by torchrun, mpirun or srun: redis://host:port or file:///dir (sets AUTOGLM_RDZV)', rdzvOption)
    .option('--run-id <id>', 'names the job in the rendezvous store (sets AUTOGLM_RUN_ID)', runIdOption)
    .hook('preAction', (cmd) => {
      const o = cmd.opts<{ rdzv?: string; runId?: string }>();
      if (cmd === program && o.rdzv) process.env.AUTOGLM_RDZV = o.rdzv;
      if (cmd === program && o.runId) process.env.AUTOGLM_RUN_ID = o.runId;
    });
  registerFinetune(program);
  registerEvaluate(program);
  registerMerge(program);
  registerDemo(program);
  registerBench(program);
  registerEmbed(program);
  registerGenerate(program);
  registerLaunch(program);
  registerWeb(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  // a CLI process is one rank of a job: when a peer is lost it exits at once for the launcher to restart the job
  setExitOnLostPeer(true);
  program.exitOverride();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof AutoGLMError) {
      process.stderr.write(`autoglm: ${e.name}: ${e.message}\n`);
      return 2;
    }
    // Not one of ours: say what happened in one line; the stack only when asked for.
    const err = e as Error;
    process.stderr.write(`autoglm: unexpected ${err?.name ?? 'error'}: ${err?.message ?? String(e)}\n`);
    if (process.env.AUTOGLM_DEBUG) process.stderr.write(`${err?.stack ?? ''}\n`);
    else process.stderr.write('autoglm: set AUTOGLM_DEBUG=1 for the stack trace\n');
    return 1;
  }
}
