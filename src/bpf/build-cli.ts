/** `node dist/src/bpf/build-cli.js [NAME...]`: compile bpf/*.bpf.c with default limits (scripts/bootstrap runs it). */
import { bpfSources, compileBpf } from './build.js';

const names = process.argv.slice(2).length ? process.argv.slice(2) : bpfSources();
for (const name of names) {
  try {
    const out = await compileBpf({ source: name });
    process.stdout.write(`bpf: ${name} -> ${out}\n`);
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exit(1);
  }
}
