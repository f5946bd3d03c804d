/**
 * Child of binding.test.ts: calls every function the addon exports with bad arguments (wrong
 * types, missing ones, negative and huge fds, Buffers of the wrong size) and prints what each
 * threw as one JSON line. Run apart so that an abort would show as a signal, not kill the suite.
 *   node dist/test/binding/bad-args.js OBJECT_FILE
 */
import { native } from '../../src/bpf/native.js';
import { Collection } from '../../src/bpf/collection.js';

const obj = process.argv[2];
const n = native() as unknown as Record<string, (...args: unknown[]) => unknown>;
const col = Collection.load(obj);
const kv = col.map('kv').fd;          // hash: 8-byte keys, 16-byte values
const pcpu = col.map('pcpu').fd;      // per-CPU array: 4-byte keys, 8 bytes per CPU
const prog = col.program('xdp_swap').fd;
const opened = n.objOpen(obj) as number; // opened, not loaded
const cpus = n.numPossibleCpus() as number;
const B = (len: number) => Buffer.alloc(len);
const HUGE_FD = 2 ** 31 - 1;            // a valid int, but no such fd
const throwing = { get objectName(): string { throw new Error('getter threw'); } };

type Case = [fn: string, args: unknown[], expect?: 'type' | 'range' | 'errno' | 'getter'];
const cases: Case[] = [
  ['objOpen', []], ['objOpen', [123]], ['objOpen', [obj, 5]], ['objOpen', [obj, [1]]], ['objOpen', [obj, { objectName: 1 }]],
  ['objOpen', [obj, { kernelLogLevel: -1 }], 'range'], ['objOpen', [obj, { kernelLogLevel: 1, kernelLogSize: 0 }], 'range'],
  ['objOpen', [`${obj}\0x`]], ['objOpen', [obj, throwing], 'getter'], ['objOpen', ['/nonexistent/x.o'], 'errno'],
  ['objName', []], ['objName', ['1']], ['objName', [-1], 'range'], ['objName', [2 ** 32], 'range'], ['objName', [999999], 'errno'],
  ['objLog', []], ['objLog', [{}]], ['objLog', [1.5], 'range'],
  ['objSetMaxEntries', []], ['objSetMaxEntries', [opened, 5, 1]], ['objSetMaxEntries', [opened, 'kv', 'x']],
  ['objSetMaxEntries', [opened, 'kv', -1], 'range'], ['objSetMaxEntries', [999999, 'kv', 1], 'errno'], ['objSetMaxEntries', [opened, 'nope', 1], 'errno'],
  ['objSetGlobal', [opened, 'verdict']], ['objSetGlobal', [opened, 'verdict', 'xxxx']], ['objSetGlobal', [opened, 1, B(4)]],
  ['objSetGlobal', [opened, 'verdict', B(2)], 'errno'],
  ['objLoad', []], ['objLoad', ['h']], ['objLoad', [NaN], 'range'],
  ['objReuseMap', [opened, 'kv']], ['objReuseMap', [opened, 'kv', 'fd']], ['objReuseMap', [opened, 'kv', -1], 'range'],
  ['objClose', []], ['objClose', ['x']], ['objClose', [-1], 'range'],
  ['objMaps', []], ['objMaps', [null]], ['objMaps', [999999], 'errno'],
  ['objPrograms', []], ['objPrograms', [true]],
  ['mapLookup', []], ['mapLookup', [kv]], ['mapLookup', [-1, B(8), 16, 0], 'range'], ['mapLookup', [2 ** 40, B(8), 16, 0], 'range'],
  ['mapLookup', [HUGE_FD, B(8), 16, 0], 'errno'], ['mapLookup', [kv, 'key', 16, 0]], ['mapLookup', [kv, B(3), 16, 0], 'range'],
  ['mapLookup', [kv, B(8), 4, 0], 'range'], ['mapLookup', [kv, B(8), 16, -1], 'range'], ['mapLookup', [kv, B(8), 16, 2 ** 33], 'range'],
  ['mapLookup', [prog, B(8), 16, 0], 'errno'], ['mapLookup', [0, B(8), 16, 0], 'errno'],
  ['mapUpdate', [kv, B(8)]], ['mapUpdate', [kv, B(8), 'v', 0]], ['mapUpdate', [kv, B(8), B(4), 0], 'range'],
  ['mapUpdate', [pcpu, B(4), B(8 * cpus + 8), 0], 'range'], ['mapUpdate', [1e10, B(8), B(16), 0], 'range'],
  ['mapDelete', [kv]], ['mapDelete', [kv, B(2)], 'range'], ['mapDelete', [-5, B(8)], 'range'],
  ['mapNextKey', [kv, B(3), 8], 'range'], ['mapNextKey', [kv, null, 3], 'range'], ['mapNextKey', [kv, null, -1], 'range'],
  ['mapNextKey', ['x', null, 8]],
  ['mapLookupBatch', [kv, null, B(2), B(32), B(64), 4], 'range'], ['mapLookupBatch', [kv, null, B(8), B(8), B(64), 4], 'range'],
  ['mapLookupBatch', [kv, null, B(8), B(32), B(16), 4], 'range'], ['mapLookupBatch', [kv, B(1), B(8), B(32), B(64), 4], 'range'],
  ['mapLookupBatch', [kv, null, B(8), B(32), B(64), -1], 'range'], ['mapLookupBatch', [kv, null, 'x', B(32), B(64), 4]],
  ['mapLookupBatch', [pcpu, null, B(8), B(16), B(32 * cpus - 1), 4], 'range'], ['mapLookupBatch', [kv, null, B(8), B(32), B(64)]],
  ['mapUpdateBatch', [kv, B(8), B(32), 2, 0], 'range'], ['mapUpdateBatch', [kv, B(16), B(16), 2, 0], 'range'],
  ['mapUpdateBatch', [kv, B(8), B(16), 'x', 0]], ['mapUpdateBatch', [kv, B(8), B(16), 1, -1], 'range'],
  ['mapDeleteBatch', [kv, B(8), 2], 'range'], ['mapDeleteBatch', [kv, 'x', 1]], ['mapDeleteBatch', [kv]],
  ['mapInfo', []], ['mapInfo', [-1], 'range'], ['mapInfo', [prog], 'errno'], ['mapInfo', ['x']], ['mapInfo', [HUGE_FD], 'errno'],
  ['progInfo', [kv], 'errno'], ['progInfo', [-1], 'range'], ['progInfo', [null]],
  ['linkInfo', [kv], 'errno'], ['linkInfo', [prog], 'errno'], ['linkInfo', [-1], 'range'],
  ['objPin', [kv]], ['objPin', [kv, 5]], ['objPin', ['x', '/sys/fs/bpf/x']],
  ['objGet', []], ['objGet', [123]], ['objGet', [null]], ['objGet', ['/nonexistent/x'], 'errno'],
  ['xdpAttach', [prog, 0, 0], 'range'], ['xdpAttach', [prog, 'lo', 0]], ['xdpAttach', [-1, 1, 0], 'range'], ['xdpAttach', [prog, 1, -1], 'range'],
  ['xdpQuery', [0], 'range'], ['xdpQuery', ['lo']], ['xdpQuery', [2 ** 31], 'range'],
  ['linkUpdate', [-1, prog, 0], 'range'], ['linkUpdate', ['x', 1, 0]], ['linkUpdate', [kv, prog, 0], 'errno'],
  ['linkDetach', []], ['linkDetach', [-1], 'range'], ['linkDetach', ['x']],
  ['testRun', [prog]], ['testRun', [prog, 'data', 64, 1]], ['testRun', [prog, B(64), -1, 1], 'range'],
  ['testRun', [prog, B(64), 64, -1], 'range'], ['testRun', [prog, B(64), 64, 2 ** 31], 'range'], ['testRun', [-1, B(64), 64, 1], 'range'],
  ['testRun', [kv, B(64), 64, 1], 'errno'],
  ['closeFd', []], ['closeFd', [-1], 'range'], ['closeFd', ['x']],
  ['ifIndex', []], ['ifIndex', [5]], ['ifIndex', ['nosuchif0'], 'errno'],
];
// Functions without arguments: extra ones must be ignored, not crash.
const noArgs = ['numPossibleCpus', 'libbpfVersion'];

const describe = (a: unknown): string => Buffer.isBuffer(a) ? `Buffer(${a.length})` : typeof a === 'object' && a !== null ? (Array.isArray(a) ? 'array' : 'object') : typeof a === 'string' ? JSON.stringify(a) : String(a);
for (const [fn, args, expect = 'type'] of cases) {
  const line: Record<string, unknown> = { fn, args: args.map(describe).join(', '), expect };
  try {
    line.returned = describe(n[fn](...args));
  } catch (e) {
    const err = e as Error & { code?: unknown; op?: unknown };
    Object.assign(line, { name: err.name, code: err.code, op: err.op, message: err.message });
  }
  process.stdout.write(`${JSON.stringify(line)}\n`);
}
for (const fn of noArgs) {
  process.stdout.write(`${JSON.stringify({ fn, args: 'junk', expect: 'none', returned: describe(n[fn]('junk', -1, {})) })}\n`);
}
n.objClose(opened);
col.close();
process.stdout.write(`${JSON.stringify({ exports: Object.keys(n).sort() })}\n`);
process.stdout.write('survived\n');
