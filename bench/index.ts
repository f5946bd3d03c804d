/**
 * `npm run bench [-- --json] [-- NAME...]`: runs each bench in its own process, one after the
 * other (two cores: running them together would measure the contention).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const json = process.argv.includes('--json');
const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const benches = readdirSync(here)
  .filter((f) => f.endsWith('.bench.js'))
  .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
  .sort();
const results: unknown[] = [];
let failed = 0;
for (const f of benches) {
  const r = spawnSync(process.execPath, [join(here, f), ...(json ? ['--json'] : [])], { stdio: json ? ['ignore', 'pipe', 'inherit'] : 'inherit', encoding: 'utf8' });
  if (r.status !== 0) { failed++; process.stderr.write(`bench ${f}: exit ${r.status}\n`); continue; }
  if (json) results.push(...JSON.parse(r.stdout));
}
if (json) process.stdout.write(JSON.stringify(results, null, 2) + '\n');
process.exit(failed ? 1 : 0);
