// A tiny server for demos and tests, on every address of its namespace:
//   node whoami-server.mjs NAME PORT [ECHO_PORT]
// TCP and UDP on PORT answer every connection or datagram with "NAME\n" (to see which real a
// flow reached); TCP on ECHO_PORT echoes what it receives (to watch a long-lived stream).
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';

const [name, port, echoPort] = [process.argv[2] ?? 'real', Number(process.argv[3] ?? 80), Number(process.argv[4] ?? 0)];
const any = { host: '::', ipv6Only: false };
createServer((s) => { s.on('error', () => {}); s.end(`${name}\n`); }).listen({ port, ...any });
const udp = createSocket({ type: 'udp6', ipv6Only: false });
udp.on('message', (_m, r) => udp.send(`${name}\n`, r.port, r.address));
udp.bind(port, '::');
if (echoPort) createServer((s) => { s.on('error', () => {}); s.pipe(s); }).listen({ port: echoPort, ...any });
process.on('SIGTERM', () => process.exit(0));
