// A tiny TCP and UDP server that answers every connection or datagram with its name:
//   node whoami-server.mjs NAME PORT
// Used by scripts/demo (and handy by hand) to see which real a connection reached.
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

const [name, port] = [process.argv[2] ?? 'real', Number(process.argv[3] ?? 80)];
createServer((s) => { s.on('error', () => {}); s.end(`${name}\n`); }).listen({ port, host: '::', ipv6Only: false });
const udp = createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (_m, r) => udp.send(`${name}\n`, r.port, r.address));
udp.bind(port, '::');
process.on('SIGTERM', () => process.exit(0));
