/** `sluice agent` and `sluice l7`: the long-running processes. */
import { existsSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { Command, Option } from 'commander';
import pino from 'pino';
import { DEFAULT_SOCKET } from './client.js';
import { intArg, nonEmpty, UsageError } from './main.js';

export const DEFAULT_STATE_DIR = '/var/lib/sluice';
export const DEFAULT_PIN_DIR = '/sys/fs/bpf/sluice';
/** DESIGN §2 shows `sluice l7 [--config FILE]`: without one, the file the README's units use. */
export const DEFAULT_L7_CONFIG = '/etc/sluice/sluice.yaml';

const BPF_FS_MAGIC = 0xcafe4a11;

/**
 * A --pin-dir given on the command line must be on a bpffs. Elsewhere pinning fails only after
 * the program is loaded, with a bare "bpf_obj_pin: Operation not permitted (EPERM)", and auto
 * takes that for "XDP cannot be used" and falls back to IPVS. (The default, /sys/fs/bpf/sluice,
 * keeps auto's fallback on a host without bpffs.)
 */
export function checkPinDir(pinDir: string): void {
  let p = resolve(pinDir);
  while (!existsSync(p) && dirname(p) !== p) p = dirname(p);
  if (statfsSync(p).type !== BPF_FS_MAGIC) {
    throw new UsageError(`--pin-dir ${pinDir} is not on a bpffs (${p} is not); give a directory under /sys/fs/bpf`);
  }
}

type AgentOpts = {
  config?: string; interface?: string; dataplane?: 'auto' | 'xdp' | 'ipvs'; xdpMode?: 'native' | 'generic';
  stateDir: string; socket: string; metrics?: string; pinDir: string; cleanup?: boolean; logLevel: string;
};

export function agentCommand(): Command {
  return new Command('agent')
    .description('run the agent: owns the data plane, serves the API on --socket')
    .option('--config <file>', 'config file (YAML/JSON); authoritative at start and on SIGHUP', nonEmpty)
    .option('--interface <if>', 'interface the XDP program attaches to', nonEmpty)
    .addOption(new Option('--dataplane <kind>', 'auto: XDP, or IPVS where XDP cannot attach').choices(['auto', 'xdp', 'ipvs']))
    .addOption(new Option('--xdp-mode <mode>', 'XDP attach mode').choices(['native', 'generic']))
    .option('--state-dir <dir>', 'where the desired state is kept', nonEmpty, DEFAULT_STATE_DIR)
    .option('--socket <path>', 'API socket (mode 0600)', nonEmpty, DEFAULT_SOCKET)
    .option('--metrics <host:port>', 'serve Prometheus metrics', nonEmpty)
    .option('--pin-dir <dir>', 'bpffs directory for pinned program, maps and link', nonEmpty, DEFAULT_PIN_DIR)
    .option('--cleanup', 'detach and unpin the XDP program, remove sluice\'s IPVS services, and exit')
    .addOption(new Option('--log-level <level>', 'pino log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'))
    .action(async (o: AgentOpts, cmd: Command) => {
      if (cmd.getOptionValueSource('pinDir') === 'cli') checkPinDir(o.pinDir);
      const logger = pino({ name: 'sluice-agent', level: o.logLevel });
      // Loaded here, not at the top: the CLI's client commands need neither libbpf nor netlink.
      const [{ runAgent }, { cleanupDataplane }, { AgentLock }] = await Promise.all([import('../agent/daemon.js'), import('../dataplane/open.js'), import('../agent/lock.js')]);
      if (o.cleanup) {
        // Not under a running agent: it would keep answering "ok" while nothing forwards.
        const lock = AgentLock.acquire({ stateDir: o.stateDir, pinDir: o.pinDir, createStateDir: false });
        try {
          const done = await cleanupDataplane({ pinDir: o.pinDir, stateDir: o.stateDir, logger });
          process.stdout.write(`ok: ${done.join('; ') || 'nothing to clean up'}\n`);
        } finally {
          lock.release();
        }
        return;
      }
      const running = await runAgent({ ...o, logger, logLevel: o.logLevel });
      await new Promise<void>((resolve) => {
        const onSignal = (sig: NodeJS.Signals) => {
          logger.info({ signal: sig }, 'stopping; the data plane keeps forwarding');
          running.stop(true).then(resolve, (e) => { logger.error({ err: e }, 'stop failed'); resolve(); });
        };
        process.once('SIGTERM', onSignal);
        process.once('SIGINT', onSignal);
      });
      // Timers of closed health probes or sockets must not keep a stopped agent around.
      process.exit(0);
    });
}

export function l7Command(): Command {
  return new Command('l7')
    .description('run the L7 HTTP proxy worker pool (config: the l7 section)')
    .option('--config <file>', 'config file (YAML/JSON) with an l7 section', nonEmpty, DEFAULT_L7_CONFIG)
    .option('--workers <n>', 'worker processes (default: one per core)', intArg(1, 256))
    .action(async (o: { config: string; workers?: number }) => {
      const { runL7 } = await import('../l7/index.js');
      const handle = await runL7({ configPath: o.config, ...(o.workers ? { workers: o.workers } : {}) });
      await handle.done;
    });
}
