/**
 * `node dist/src/bpf/build-cli.js [NAME...]`: compile bpf/*.bpf.c (scripts/bootstrap runs it).
 * The balancer is also built for the default limits, the object an agent with a default config
 * loads: a host (or scripts/vm, which has no clang) then never compiles at start.
 */
import { bpfSources, compileBpf } from './build.js';
import { compileBalancer } from '../dataplane/xdp/dataplane.js';
import { DEFAULT_DATAPLANE } from '../model/types.js';

const names = process.argv.slice(2).length ? process.argv.slice(2) : bpfSources();
try {
  for (const name of names) {
    process.stdout.write(`bpf: ${name} -> ${await compileBpf({ source: name })}\n`);
    if (name === 'balancer') process.stdout.write(`bpf: balancer (default limits) -> ${await compileBalancer(DEFAULT_DATAPLANE)}\n`);
  }
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exit(1);
}
