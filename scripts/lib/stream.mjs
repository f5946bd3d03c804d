// Hold one TCP connection to an echo server for DURATION_MS, sending a short line every 10 ms,
// and report the longest silence between echoes as JSON: { maxGapMs, sent, received, error }.
//   node stream.mjs HOST PORT DURATION_MS
import { connect } from 'node:net';

const [host, port, duration] = [process.argv[2], Number(process.argv[3]), Number(process.argv[4] ?? 3000)];
const s = connect({ host, port });
let sent = 0, received = 0, last = 0, maxGap = 0, error = null, timer;
s.setNoDelay(true);
s.on('connect', () => {
  last = performance.now();
  timer = setInterval(() => { s.write('x'.repeat(63) + '\n'); sent++; }, 10);
  setTimeout(() => { clearInterval(timer); s.end(); }, duration);
});
s.on('data', (d) => {
  const now = performance.now();
  maxGap = Math.max(maxGap, now - last);
  last = now;
  received += d.length;
});
s.on('error', (e) => { error = e.code ?? e.message; clearInterval(timer); });
s.on('close', () => {
  process.stdout.write(JSON.stringify({ maxGapMs: Math.round(maxGap), sent, received: Math.floor(received / 64), error }) + '\n');
});
