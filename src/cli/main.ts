/**
 * The `sluice` command line (DESIGN §2). A thin client of the agent API, except `agent` and
 * `l7`, which run the daemons. Exit codes: 0 ok, 1 refused (one-line reason on stderr), 2 usage.
 */
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ValidationError, SluiceError, MODES, HASHES, SCHEDULERS } from '../model/index.js';
import { DEFAULT_SOCKET } from './client.js';
import { vipCommands, realCommands, applyCommand, statusCommand, statsCommand } from './commands.js';
import { agentCommand, l7Command } from './daemons.js';

/** Local argument errors: exit 2, like a commander usage error. */
export class UsageError extends SluiceError {
  constructor(message: string) { super('EUSAGE', message); }
}

export function intArg(min: number, max: number) {
  return (v: string) => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidArgumentError(`must be an integer ${min}..${max}`);
    return Number(v);
  };
}

/**
 * A path or name that may not be empty: `--socket "$SOCK"` or `--interface "$IF"` with the variable
 * unset would otherwise fall back to the saved state's interface without a word, or reach the
 * agent's listen() only after XDP was attached.
 */
export function nonEmpty(v: string): string {
  if (v.trim() === '') throw new InvalidArgumentError('must not be empty');
  return v;
}

/** Options every client command takes. */
export function common(cmd: Command, json = true): Command {
  cmd.option('--socket <path>', 'agent API socket', nonEmpty, DEFAULT_SOCKET);
  if (json) cmd.option('--json', 'print JSON for scripts');
  return cmd;
}

export const modeOption = () => new Option('--mode <mode>', 'forwarding: dsr (MAC rewrite), ipip (encapsulation) or nat').choices(MODES as string[]).default('dsr');
export const hashOption = () => new Option('--hash <hash>', 'flow key: 5tuple or src-ip').choices(HASHES as string[]).default('5tuple');
export const schedulerOption = () => new Option('--scheduler <name>', 'IPVS scheduler (the XDP data plane always uses Maglev)').choices(SCHEDULERS as string[]).default('mh');

export function buildProgram(): Command {
  const program = new Command('sluice')
    .description('L4 (XDP/Maglev, IPVS fallback) and L7 load balancer')
    .version('0.1.0')
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (s, write) => write(s.startsWith('error:') ? `sluice: ${s}` : s) });
  program.addCommand(agentCommand());
  program.addCommand(vipCommands());
  program.addCommand(realCommands());
  program.addCommand(applyCommand());
  program.addCommand(statusCommand());
  program.addCommand(statsCommand());
  program.addCommand(l7Command());
  // Subcommands inherit exitOverride only if set before they are added; set it everywhere.
  const walk = (c: Command) => { c.exitOverride(); c.configureOutput(program.configureOutput()); c.commands.forEach(walk); };
  program.commands.forEach(walk);
  return program;
}

/**
 * A reader that went away (`sluice stats --watch --json | head -1`, a pager quit) is the end of
 * the output, as SIGPIPE ends C tools: not an unhandled 'error' event with a stack trace.
 */
function quietOnClosedPipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}

export async function main(argv = process.argv): Promise<number> {
  quietOnClosedPipe();
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help, --version and `help CMD` exit 0; help shown because a command is missing
      // (`sluice`, `sluice vip`) or unknown (`sluice help nope`) is a usage error like any other.
      return e.exitCode === 0 ? 0 : 2;
    }
    const err = e as SluiceError;
    const usage = err instanceof UsageError || err instanceof ValidationError;
    // One line, as the contract says, even when a lower layer's message has several (libbpf's do).
    const reason = String(err.message).split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
    process.stderr.write(`sluice: ${reason}\n`);
    return usage ? 2 : 1;
  }
}
