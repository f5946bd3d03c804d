// Open N TCP connections to HOST:PORT one after another (each from a new source port), read the
// one-line answer, and print how many went where as JSON: { "real1": 98, ..., "failed": 0 }.
//   node tally.mjs HOST PORT N [TIMEOUT_MS]
import { connect } from 'node:net';

const [host, port, n, timeout] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 300), Number(process.argv[5] ?? 2000)];
const counts = {};
function once() {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    let got = '';
    const t = setTimeout(() => { s.destroy(); resolve('failed'); }, timeout);
    s.on('data', (d) => (got += d));
    s.on('end', () => { clearTimeout(t); resolve(got.trim() || 'failed'); });
    s.on('error', () => { clearTimeout(t); resolve('failed'); });
  });
}
for (let i = 0; i < n; i++) {
  const who = await once();
  counts[who] = (counts[who] ?? 0) + 1;
}
process.stdout.write(JSON.stringify(counts) + '\n');
