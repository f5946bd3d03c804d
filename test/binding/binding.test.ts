/**
 * The libbpf binding against the real kernel: every call the agent relies on, and the errors
 * bad calls must give.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  Collection, Program, BpfMap, Link, XdpAction, BpfError, compileBpf, ensureBpffs, pinDir, unpinAll, REPO_ROOT, codec,
} from '../../src/bpf/index.js';
import { SluiceError } from '../../src/model/errors.js';
import { addNs, delNs, inNs, runId } from '../support/netns.js';

const { struct, u32, u16, u64n, pad } = codec;
const KvKey = struct({ a: u32, b: u16, _pad: pad(2) });
const KvVal = struct({ x: u64n, y: u32, z: u32 });
const PkvVal = struct({ a: u32, b: u32, c: u32 });
const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'bpf');
const FIXTURE = join(FIXTURES, 'binding.bpf.c');
const DIST_BPF = join(REPO_ROOT, 'dist', 'src', 'bpf', 'index.js');

let obj: string;
let coll: Collection;
before(async () => {
  obj = await compileBpf({ source: FIXTURE });
  coll = Collection.load(obj, { maxEntries: { kv: 64 } });
});
after(() => coll.close());

function frame(etherType: number): Buffer {
  const b = Buffer.alloc(64);
  Buffer.from([1, 2, 3, 4, 5, 6]).copy(b, 0);    // dst
  Buffer.from([10, 11, 12, 13, 14, 15]).copy(b, 6); // src
  b.writeUInt16BE(etherType, 12);
  return b;
}

function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/** A veth pair between two fresh namespaces, addressed 10.250.0.1 (va, in a) and .2 (vb, in b). */
function vethPair(id: string): { a: string; b: string; cleanup(): void } {
  const [a, b] = [addNs(`slt-a-${id}`), addNs(`slt-b-${id}`)];
  inNs(a, 'ip', ['link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb', 'netns', b]);
  inNs(a, 'ip', ['addr', 'add', '10.250.0.1/24', 'dev', 'va']);
  inNs(b, 'ip', ['addr', 'add', '10.250.0.2/24', 'dev', 'vb']);
  inNs(a, 'ip', ['link', 'set', 'va', 'up']);
  inNs(b, 'ip', ['link', 'set', 'vb', 'up']);
  return { a, b, cleanup: () => { delNs(a); delNs(b); } };
}

/** Run an ES module snippet in a child entered into namespace `ns` (network only, so it keeps the host's bpffs). */
function inNsNode(ns: string, code: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '--input-type=module', '-e', code], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('load lists the object maps and programs by name', () => {
  assert.deepEqual(coll.mapNames.sort(), ['arr', 'kv', 'pcpu', 'pkv']);
  assert.deepEqual(coll.programNames.sort(), ['xdp_count', 'xdp_swap']);
  assert.match(coll.name, /^binding-[0-9a-f]+$/, 'the file name up to its first dot, as libbpf names objects');
});

test('max_entries set before load takes effect', () => {
  assert.equal(coll.map('kv').maxEntries, 64);
  assert.equal(coll.map('arr').maxEntries, 8);
});

test('every native function refuses bad arguments with a JS error naming the op, and the process survives', () => {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'dist', 'test', 'binding', 'bad-args.js'), obj], { encoding: 'utf8' });
  assert.equal(r.signal, null, `the child died of ${r.signal}:\n${r.stderr}`);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.pop(), 'survived');
  const { exports } = JSON.parse(lines.pop()!) as { exports: string[] };
  const results = lines.map((l) => JSON.parse(l) as { fn: string; args: string; expect: string; returned?: string; name?: string; code?: string; op?: string; message?: string });
  assert.deepEqual([...new Set(results.map((x) => x.fn))].sort(), exports, 'every export is called with bad arguments');
  for (const x of results) {
    const what = `${x.fn}(${x.args})`;
    if (x.expect === 'none') { assert.equal(x.message, undefined, `${what} threw ${x.message}`); continue; }
    assert.ok(x.message !== undefined, `${what} returned ${x.returned} instead of throwing`);
    if (x.expect === 'getter') { assert.equal(x.message, 'getter threw', what); continue; }
    assert.equal(typeof x.op, 'string', `${what}: no op in ${x.name}: ${x.message}`);
    assert.ok(x.message!.startsWith(`${x.op}: `), `${what}: the message does not start with the op: ${x.message}`);
    assert.match(x.code!, /^E[A-Z0-9]+$/, what);
    const name = { type: 'TypeError', range: 'RangeError', errno: 'Error' }[x.expect];
    assert.equal(x.name, name, `${what}: ${x.name}: ${x.message}`);
    if (x.expect !== 'errno') assert.equal(x.code, 'EINVAL', what);
  }
  const find = (fn: string, args: string) => results.find((x) => x.fn === fn && x.args === args)!;
  assert.match(find('objGet', '123').message!, /^bpf_obj_get: argument 1 \(path\) must be a string, got number/);
  assert.match(results.find((x) => x.fn === 'mapLookup' && x.args.endsWith(', Buffer(3), 16, 0'))!.message!, /key is 3 bytes, the map needs 8/);
  assert.match(results.find((x) => x.fn === 'mapLookup' && x.args.endsWith(', Buffer(8), 4, 0'))!.message!, /value length is 4 bytes, the map needs 16/);
  assert.match(results.find((x) => x.fn === 'mapInfo' && x.expect === 'errno' && /not a/.test(x.message!))!.message!, /is bpf-prog, not a BPF map/);
  assert.ok(results.some((x) => x.fn === 'linkInfo' && /is bpf-map, not a BPF link/.test(x.message!)));
  assert.ok(results.some((x) => x.fn === 'mapLookup' && x.op === 'bpf_map_lookup_elem' && /not a BPF map/.test(x.message!)), 'a program fd is not taken for a map');
  // No such fd: the kernel's own answer (6.18 says EBADFD for BPF_OBJ_GET_INFO_BY_FD, older ones EBADF).
  assert.match(find('mapInfo', String(2 ** 31 - 1)).code!, /^EBADFD?$/);
});

test('hash map update, lookup, next-key and delete round-trip through codecs', () => {
  const kv = coll.map('kv').typed(KvKey, KvVal);
  kv.set({ a: 7, b: 80 }, { x: 2 ** 40, y: 1, z: 2 });
  kv.set({ a: 8, b: 443 }, { x: 3, y: 4, z: 5 });
  assert.deepEqual(kv.get({ a: 7, b: 80 }), { x: 2 ** 40, y: 1, z: 2 });
  assert.equal([...coll.map('kv').keys()].length, 2);
  assert.equal(kv.delete({ a: 7, b: 80 }), true);
  assert.equal(kv.delete({ a: 7, b: 80 }), false);
  assert.equal(kv.get({ a: 7, b: 80 }), undefined);
  kv.delete({ a: 8, b: 443 });
});

test('batch update, lookup and delete move many entries per syscall', () => {
  const kv = coll.map('kv').typed(KvKey, KvVal);
  const entries = Array.from({ length: 40 }, (_, i) => [{ a: i, b: i }, { x: i * 10, y: i, z: 0 }] as const);
  assert.equal(kv.setMany(entries), 40);
  const got = kv.entries().sort((p, q) => p[0].a - q[0].a);
  assert.deepEqual(got, entries.map(([k, v]) => [k, v]));
  // Small chunks: the batch token carries the position from one call to the next.
  assert.equal(coll.map('kv').lookupAll(7).length, 40);
  assert.equal(kv.deleteMany(entries.map(([k]) => k)), 40);
  assert.equal(kv.entries().length, 0);
});

test('array batch lookup returns every slot', () => {
  const arr = coll.map('arr').typed(u32, u64n);
  arr.setMany([[3, 33], [5, 55]]);
  const all = new Map(arr.entries());
  assert.equal(all.size, 8);
  assert.equal(all.get(3), 33);
  assert.equal(all.get(5), 55);
  arr.setMany([[3, 0], [5, 0]]);
});

test('per-CPU maps return one value per possible CPU', () => {
  const pcpu = coll.map('pcpu');
  assert.equal(pcpu.perCpu, true);
  const before = pcpu.typed(u32, u64n).getPerCpu(0)!;
  assert.equal(before.length, pcpu.cpus);
  coll.program('xdp_swap').testRun(frame(0x0800));
  const afterRun = pcpu.typed(u32, u64n).getPerCpu(0)!;
  assert.equal(sum(afterRun), sum(before) + 1);
});

test('per-CPU update writes one value per possible CPU, each read back from its own slot', () => {
  const pcpu = coll.map('pcpu').typed(u32, u64n);
  const cpus = coll.map('pcpu').cpus;
  const want = Array.from({ length: cpus }, (_, i) => 1000 + i * 7);
  pcpu.setPerCpu(2, want);
  assert.deepEqual(pcpu.getPerCpu(2), want);
  pcpu.set(2, 5);  // set() writes the same value to every CPU
  assert.deepEqual(pcpu.getPerCpu(2), Array(cpus).fill(5));
  pcpu.set(2, 0);

  // 12-byte values sit in 16-byte slots: raw buffers come back in valueSize pieces, in CPU order.
  const pkv = coll.map('pkv');
  assert.equal(pkv.valueBufferSize, 16 * cpus);
  const raw = Array.from({ length: cpus }, (_, i) => Buffer.from(Array.from({ length: 12 }, (_, j) => i * 16 + j + 1)));
  pkv.updatePerCpu(u32Key(9), raw);
  assert.deepEqual(pkv.lookupPerCpu(u32Key(9)), raw);
  const whole = pkv.lookup(u32Key(9))!;
  for (let i = 0; i < cpus; i++) assert.deepEqual(whole.subarray(i * 16, i * 16 + 12), raw[i]);
  assert.ok(pkv.delete(u32Key(9)));

  assert.throws(() => pcpu.setPerCpu(2, Array(cpus + 1).fill(1)), { code: 'EINVAL', op: 'TypedMap.setPerCpu', message: new RegExp(`${cpus + 1} values for ${cpus} possible CPUs`) });
  assert.throws(() => coll.map('kv').updatePerCpu(Buffer.alloc(8), []), { code: 'EINVAL', op: 'BpfMap.updatePerCpu', message: /map kv is not per-CPU/ });
  // One CPU's value where the map wants all of them (12 bytes never fill a 16-byte slot).
  assert.throws(() => pkv.update(u32Key(1), Buffer.alloc(12)), { code: 'EINVAL', op: 'BpfMap.update', message: new RegExp(`value is 12 bytes, the map's values are ${16 * cpus} \\(${cpus} CPUs x 16\\)`) });
});

test('per-CPU batch lookup returns one value per possible CPU per key', () => {
  const pkv = coll.map('pkv');
  const typed = pkv.typed(u32, PkvVal);
  const cpus = pkv.cpus;
  const value = (key: number, cpu: number) => ({ a: key, b: cpu, c: key * 100 + cpu });
  const keys = [1, 2, 3, 4, 5, 6, 7];
  // Distinct values per CPU, written in one batch.
  const n = pkv.updateBatch(keys.map((k) => [u32Key(k), typed.encodePerCpu(Array.from({ length: cpus }, (_, c) => value(k, c)))] as const));
  assert.equal(n, keys.length);
  const got = new Map(typed.entriesPerCpu());
  assert.deepEqual([...got.keys()].sort((a, b) => a - b), keys);
  for (const k of keys) assert.deepEqual(got.get(k), Array.from({ length: cpus }, (_, c) => value(k, c)), `key ${k}`);
  // In chunks smaller than the map, per-CPU values still land whole.
  assert.equal(pkv.lookupAll(3).length, keys.length);
  assert.throws(() => typed.entries(), { code: 'EINVAL', op: 'TypedMap.entries', message: /per-CPU/ });
  assert.equal(typed.deleteMany(keys), keys.length);

  // A per-CPU array batch: every index, each with one value per CPU.
  const pcpu = coll.map('pcpu').typed(u32, u64n);
  const all = pcpu.entriesPerCpu();
  assert.equal(all.length, 4);
  for (const [, per] of all) assert.equal(per.length, cpus);
});

test('BPF_PROG_TEST_RUN returns the action, the rewritten bytes and a duration', () => {
  const r = coll.program('xdp_swap').testRun(frame(0x88b5));
  assert.equal(r.action, XdpAction.TX);
  assert.deepEqual([...r.data.subarray(0, 12)], [10, 11, 12, 13, 14, 15, 1, 2, 3, 4, 5, 6]);
  assert.equal(r.data.length, 64);
  assert.ok(r.durationNs >= 0);
  assert.equal(coll.program('xdp_swap').testRun(frame(0x0800)).action, XdpAction.PASS);
});

test('BPF_PROG_TEST_RUN with repeat runs the program that many times and reports a mean duration', () => {
  const swap = coll.program('xdp_swap');
  const counter = coll.map('pcpu').typed(u32, u64n);
  const before = sum(counter.getPerCpu(0)!);
  const r = swap.testRun(frame(0x0800), { repeat: 5000 });
  assert.equal(r.action, XdpAction.PASS);
  assert.equal(sum(counter.getPerCpu(0)!), before + 5000, 'the program counted every repetition');
  // A mean per repetition: > 0 (a run is never free) and far below a millisecond even on a
  // loaded machine (the kernel stops the clock while the test run is preempted).
  assert.ok(r.durationNs > 0 && r.durationNs < 1e6, `duration ${r.durationNs} ns`);
  // The packet is not restored between repetitions: two swaps undo each other, three do not.
  const twice = swap.testRun(frame(0x88b5), { repeat: 2 });
  assert.equal(twice.action, XdpAction.TX);
  assert.deepEqual(twice.data, frame(0x88b5));
  const thrice = swap.testRun(frame(0x88b5), { repeat: 3 });
  assert.deepEqual([...thrice.data.subarray(0, 12)], [10, 11, 12, 13, 14, 15, 1, 2, 3, 4, 5, 6]);
});

test('BPF_PROG_TEST_RUN with an output buffer too small fails with ENOSPC naming the sizes', () => {
  const swap = coll.program('xdp_swap');
  const counter = coll.map('pcpu').typed(u32, u64n);
  const before = sum(counter.getPerCpu(0)!);
  assert.throws(() => swap.testRun(frame(0x88b5), { maxOut: 20 }), {
    code: 'ENOSPC', op: 'bpf_prog_test_run_opts', message: /output is 64 bytes, more than the 20 asked for/,
  });
  assert.equal(sum(counter.getPerCpu(0)!), before + 1, 'the program did run: only the copy-out failed');
  // Exactly the output's size is enough.
  assert.equal(swap.testRun(frame(0x88b5), { maxOut: 64 }).data.length, 64);
  // No output buffer at all: the action only.
  const r = swap.testRun(frame(0x88b5), { maxOut: 0 });
  assert.equal(r.action, XdpAction.TX);
  assert.equal(r.data.length, 0);
});

test('read-only globals set before load change the program', async () => {
  const c = Collection.load(obj, { globals: { verdict: Buffer.from([XdpAction.DROP, 0, 0, 0]) } });
  try {
    assert.equal(c.program('xdp_swap').testRun(frame(0x0800)).action, XdpAction.DROP);
  } finally { c.close(); }
});

test('a global of the wrong size is refused with EINVAL', () => {
  assert.throws(() => Collection.load(obj, { globals: { verdict: Buffer.alloc(2) } }), { code: 'EINVAL', op: 'set_global', message: /verdict is 4 bytes/ });
});

test('an unknown global is refused with ENOENT naming it', () => {
  assert.throws(() => Collection.load(obj, { globals: { nope: Buffer.alloc(4) } }), { code: 'ENOENT', op: 'set_global', message: /nope/ });
});

test('a program the verifier rejects fails to load with EACCES, the op and the verifier log', async () => {
  const bad = await compileBpf({ source: join(FIXTURES, 'reject.bpf.c') });
  // Without a log level libbpf retries at level 1 into its own buffer; with one, into ours.
  for (const opts of [{}, { logLevel: 1 }, { logLevel: 2, logSize: 1 << 20 }]) {
    assert.throws(() => Collection.load(bad, opts), (e: Error & { code: string; op: string }) => {
      assert.equal(e.code, 'EACCES', JSON.stringify(opts));
      assert.equal(e.op, 'bpf_object__load');
      assert.match(e.message, /^bpf_object__load: Permission denied \(EACCES\)/);
      assert.match(e.message, /xdp_unchecked/);
      assert.match(e.message, /invalid access to packet, off=12 size=1/, 'the verifier log says why');
      assert.match(e.message, /R1 offset is outside of the packet/);
      return true;
    });
  }
});

test('the log level keeps the verifier log of a successful load', () => {
  const c = Collection.load(obj, { logLevel: 4 });  // 4: statistics only
  try {
    assert.match(c.kernelLog, /processed \d+ insns/);
  } finally { c.close(); }
  const quiet = Collection.load(obj);
  try { assert.equal(quiet.kernelLog, ''); } finally { quiet.close(); }
  assert.throws(() => Collection.load(obj, { logLevel: -1 }), { name: 'RangeError', code: 'EINVAL', op: 'bpf_object__open_file', message: /kernelLogLevel/ });
  // A log buffer too small for the log fails the load: the kernel will not truncate it silently.
  assert.throws(() => Collection.load(obj, { logLevel: 2, logSize: 64 }), { code: 'ENOSPC', op: 'bpf_object__load' });
});

test('open options reach libbpf: object name, kconfig, custom BTF for CO-RE, pin root', async () => {
  ensureBpffs();
  const src = await compileBpf({ source: join(FIXTURES, 'options.bpf.c') });
  const root = `/sys/fs/bpf/sluice-test-${runId()}`;
  const kconfig = 'CONFIG_SLUICE_TEST_VERDICT=3';
  try {
    const c = Collection.load(src, { pinRootPath: root, kconfig, objectName: 'sluicet' });
    try {
      assert.equal(c.name, 'sluicet');
      // vmlinux BTF has task_struct, so the verdict comes from the kconfig option (3, XDP_TX).
      assert.equal(c.program('xdp_core').testRun(frame(0x0800)).action, XdpAction.TX);
      // The map declared LIBBPF_PIN_BY_NAME is pinned under the pin root and reopens as the same map.
      const pinned = BpfMap.openPinned(`${root}/by_name`);
      assert.equal(pinned.id, c.map('by_name').id);
      pinned.close();
    } finally { c.close(); }
    // A second load under the same root reuses the pinned map (its counter kept counting).
    const again = Collection.load(src, { pinRootPath: root, kconfig });
    try {
      again.program('xdp_core').testRun(frame(0x0800));
      assert.equal(again.map('by_name').typed(u32, u64n).get(0), 2);
    } finally { again.close(); }
    // A custom BTF without task_struct answers the CO-RE question instead of vmlinux.
    const custom = Collection.load(src, { pinRootPath: root, kconfig, btfCustomPath: obj });
    try {
      assert.equal(custom.program('xdp_core').testRun(frame(0x0800)).action, XdpAction.DROP);
    } finally { custom.close(); }
    assert.throws(() => Collection.load(src, { pinRootPath: root, btfCustomPath: '/nonexistent/vmlinux' }), {
      code: 'ENOENT', op: 'bpf_object__load', message: /failed to parse target BTF/,
    });
  } finally { unpinAll(root); }
});

test('an unknown map name is a clear ENOENT error listing the maps', () => {
  assert.throws(() => coll.map('nope'), { code: 'ENOENT', op: 'Collection.map', message: /^Collection\.map: .*no map named "nope".*arr/ });
  assert.throws(() => coll.program('nope'), { code: 'ENOENT', op: 'Collection.program', message: /no program named "nope".*xdp_swap/ });
  assert.throws(() => Collection.load(obj, { maxEntries: { nope: 4 } }), { code: 'ENOENT', op: 'bpf_map__set_max_entries', message: /nope/ });
});

test('errors raised in TypeScript have the native errors\' shape and are SluiceErrors', () => {
  const errors: unknown[] = [];
  for (const f of [() => coll.map('nope'), () => coll.map('kv').lookup(Buffer.alloc(3)), () => coll.map('kv').typed(u32, KvVal)]) {
    try { f(); } catch (e) { errors.push(e); }
  }
  try { coll.map('arr').update(u32Key(100), Buffer.alloc(8)); } catch (e) { errors.push(e); }  // native
  assert.equal(errors.length, 4);
  for (const e of errors as Array<Error & { code: string; op: string; errno: number }>) {
    assert.equal(typeof e.code, 'string');
    assert.equal(typeof e.op, 'string');
    assert.equal(typeof e.errno, 'number');
    assert.ok(e.message.startsWith(`${e.op}: `), e.message);
  }
  assert.ok(errors[0] instanceof BpfError && errors[0] instanceof SluiceError);
  assert.equal((errors[1] as BpfError).errno, 22);
  const m = new BpfMap(coll.map('arr').fd, false);
  m.close();
  assert.throws(() => m.lookup(u32Key(0)), { code: 'EBADF', op: 'BpfMap.fd', message: /map arr is closed/ });
  assert.throws(() => coll.program('xdp_swap').attachXdp('lo', 'bogus' as 'native'), { code: 'EINVAL', op: 'Program.attachXdp', message: /xdp_swap/ });
});

test('a missing object file is ENOENT from bpf_object__open_file', () => {
  assert.throws(() => Collection.load('/nonexistent/x.bpf.o'), { code: 'ENOENT', op: 'bpf_object__open_file', message: /\/nonexistent\/x\.bpf\.o/ });
});

test('a key of the wrong size is refused before any syscall', () => {
  assert.throws(() => coll.map('kv').lookup(Buffer.alloc(3)), { code: 'EINVAL', op: 'BpfMap.lookup', message: /map kv: key is 3 bytes.*8/ });
  assert.throws(() => coll.map('kv').update(Buffer.alloc(8), Buffer.alloc(4)), { code: 'EINVAL', op: 'BpfMap.update', message: /value is 4 bytes/ });
  assert.throws(() => coll.map('kv').deleteBatch([Buffer.alloc(8), Buffer.alloc(2)]), { code: 'EINVAL', op: 'BpfMap.deleteBatch' });
});

test('a codec whose size does not match the map is refused', () => {
  assert.throws(() => coll.map('kv').typed(u32, KvVal), { code: 'EINVAL', op: 'BpfMap.typed', message: /map kv: key codec is 4 bytes/ });
});

test('an out-of-range array index is a kernel error with its errno name', () => {
  assert.throws(() => coll.map('arr').update(u32Key(100), Buffer.alloc(8)), { code: 'E2BIG', op: 'bpf_map_update_elem' });
});

test('an operation a map type lacks is ENOTSUPP by name, though libc does not know that errno', async () => {
  const balancer = Collection.load(await compileBpf({ source: 'balancer' }));
  try {
    assert.throws(() => balancer.map('tx_ports').lookupAll(), { code: 'ENOTSUPP', errno: 524, op: 'bpf_map_lookup_batch', message: /Operation not supported by this map/ });
  } finally { balancer.close(); }
});

test('maps and programs pinned under bpffs reopen with the same contents', () => {
  ensureBpffs();
  const dir = pinDir(`/sys/fs/bpf/sluice-test-${runId()}`);
  try {
    coll.map('arr').typed(u32, u64n).set(2, 4242);
    coll.map('arr').pin(`${dir}/arr`);
    coll.program('xdp_swap').pin(`${dir}/xdp_swap`);
    const m = BpfMap.openPinned(`${dir}/arr`);
    const p = Program.openPinned(`${dir}/xdp_swap`);
    assert.equal(m.typed(u32, u64n).get(2), 4242);
    assert.equal(m.id, coll.map('arr').id);
    assert.equal(p.id, coll.program('xdp_swap').id);
    // A pin of the other kind is refused by name, not misread.
    assert.throws(() => Program.openPinned(`${dir}/arr`), { code: 'EINVAL', op: 'bpf_obj_get_info_by_fd', message: /bpf-map, not a BPF program/ });
    assert.throws(() => coll.map('arr').pin(`${dir}/arr`), { code: 'EEXIST', op: 'bpf_obj_pin' });
    m.close();
    p.close();
    coll.map('arr').typed(u32, u64n).set(2, 0);
  } finally { unpinAll(dir); }
  assert.throws(() => BpfMap.openPinned(`${dir}/arr`), { code: 'ENOENT', op: 'bpf_obj_get' });
});

test('XDP attaches natively to a veth in a namespace through a pinned link, and the link swaps programs atomically', () => {
  ensureBpffs();
  const id = runId();
  const net = vethPair(id);
  const { a, b } = net;
  const dir = pinDir(`/sys/fs/bpf/sluice-test-${id}`);
  try {
    coll.program('xdp_swap').pin(`${dir}/prog`);
    // Attaching must happen inside the namespace: a child process entered into it pins the link.
    const child = inNsNode(a, `
      import { Program, xdpAttached } from ${JSON.stringify(DIST_BPF)};
      const link = Program.openPinned(${JSON.stringify(`${dir}/prog`)}).attachXdp('va', 'native');
      link.pin(${JSON.stringify(`${dir}/link`)});
      console.log(JSON.stringify({ ...link.info(), attached: xdpAttached('va') }));`);
    assert.equal(child.status, 0, child.stderr);
    const info = JSON.parse(child.stdout);
    const swapId = coll.program('xdp_swap').id;
    assert.equal(info.progId, swapId);
    assert.equal(info.ifindex, Number(inNs(a, 'ip', ['-o', 'link', 'show', 'dev', 'va']).split(':')[0]));
    assert.deepEqual(info.attached, { mode: 'native', progId: swapId, nativeProgId: swapId, genericProgId: 0 });
    const shown = inNs(a, 'ip', ['link', 'show', 'dev', 'va']);
    assert.match(shown, new RegExp(`\\bxdp .*prog/xdp id ${swapId}`, 's'));
    assert.doesNotMatch(shown, /xdpgeneric/);

    const link = Link.openPinned(`${dir}/link`);
    link.update(coll.program('xdp_count'), coll.program('xdp_swap'));
    assert.equal(link.info().progId, coll.program('xdp_count').id);
    const counter = coll.map('arr').typed(u32, u64n);
    const before = counter.get(0)!;
    inNs(b, 'ping', ['-c', '3', '-i', '0.05', '-W', '1', '10.250.0.1']);
    assert.ok(counter.get(0)! >= before + 3, 'the replacement program saw the pings');
    // Replacing with a stale expected program is refused: the swap is compare-and-exchange.
    assert.throws(() => link.update(coll.program('xdp_swap'), coll.program('xdp_swap')), { code: 'EPERM', op: 'bpf_link_update' });
    link.detach();
    assert.doesNotMatch(inNs(a, 'ip', ['link', 'show', 'dev', 'va']), /xdp/);
    link.close();
  } finally {
    unpinAll(dir);
    net.cleanup();
  }
});

test('XDP attaches in generic (SKB) mode when asked, and an unpinned link detaches when its fd closes', () => {
  const net = vethPair(runId());
  const { a, b } = net;
  try {
    const countId = coll.program('xdp_count').id;
    const counter = coll.map('arr').typed(u32, u64n);
    const before = counter.get(0)!;
    // The child holds the only reference to the link: it reports, lets traffic through, and exits.
    ensureBpffs();
    const dir = pinDir(`/sys/fs/bpf/sluice-test-${runId()}`);
    try {
      coll.program('xdp_count').pin(`${dir}/prog`);
      const r = inNsNode(a, `
        import { execFileSync } from 'node:child_process';
        import { Program, xdpAttached } from ${JSON.stringify(DIST_BPF)};
        const link = Program.openPinned(${JSON.stringify(`${dir}/prog`)}).attachXdp('va', 'generic');
        const shown = execFileSync('ip', ['link', 'show', 'dev', 'va'], { encoding: 'utf8' });
        execFileSync('nsenter', ['--net=/run/netns/${b}', 'ping', '-c', '3', '-i', '0.05', '-W', '1', '10.250.0.1']);
        console.log(JSON.stringify({ info: link.info(), attached: xdpAttached('va'), shown }));`);
      assert.equal(r.status, 0, r.stderr);
      const out = JSON.parse(r.stdout);
      assert.equal(out.info.progId, countId);
      assert.deepEqual(out.attached, { mode: 'generic', progId: countId, nativeProgId: 0, genericProgId: countId });
      assert.match(out.shown, new RegExp(`xdpgeneric.*prog/xdp id ${countId}`, 's'));
    } finally { unpinAll(dir); }
    assert.ok(counter.get(0)! >= before + 3, 'the generic-mode program saw the pings');
    // The child exited: its link fd closed, and an unpinned link goes with it.
    assert.doesNotMatch(inNs(a, 'ip', ['link', 'show', 'dev', 'va']), /xdp/);
  } finally {
    net.cleanup();
  }
});

test('without root privileges loading fails with EPERM and opening a root-only pin with EACCES, not a crash', () => {
  ensureBpffs();
  const dir = pinDir(`/sys/fs/bpf/sluice-test-${runId()}`);
  coll.map('arr').pin(`${dir}/arr`);
  // The child imports everything and copies the object where anyone can read it while still
  // root, then drops to nobody: the repository may sit in a directory only root can enter.
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import { chmodSync, copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
    import { tmpdir } from 'node:os';
    import { join } from 'node:path';
    import { Collection, BpfMap } from ${JSON.stringify(DIST_BPF)};
    import { native } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'bpf', 'native.js'))};
    native();  // load the addon while its directory is readable
    const tmp = mkdtempSync(join(tmpdir(), 'sluice-nonroot-'));
    chmodSync(tmp, 0o755);
    const obj = join(tmp, 'binding.bpf.o');
    copyFileSync(${JSON.stringify(obj)}, obj);
    chmodSync(obj, 0o644);
    process.setgroups([]);
    process.setgid(65534);
    process.setuid(65534);  // from root to non-root: the kernel clears every capability
    const status = readFileSync('/proc/self/status', 'utf8');
    const out = { uid: process.getuid(), capEff: /CapEff:\\s*(\\w+)/.exec(status)[1], capPrm: /CapPrm:\\s*(\\w+)/.exec(status)[1], tmp };
    const attempt = (f) => { try { f(); return 'no error'; } catch (e) { return e.code + ' ' + e.op; } };
    out.load = attempt(() => Collection.load(obj));
    out.openPinned = attempt(() => BpfMap.openPinned(${JSON.stringify(`${dir}/arr`)}));
    console.log(JSON.stringify(out));`], { encoding: 'utf8' });
  let tmp: string | undefined;
  try {
    assert.equal(r.signal, null, r.stderr);
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    tmp = out.tmp;
    assert.equal(out.uid, 65534);
    assert.equal(out.capEff, '0000000000000000');
    assert.equal(out.capPrm, '0000000000000000');
    assert.equal(out.load, 'EPERM bpf_object__load');
    // bpffs pins are files: root's 0600 pin refuses nobody at the path, before BPF is asked.
    assert.equal(out.openPinned, 'EACCES bpf_obj_get');
  } finally {
    unpinAll(dir);
    if (tmp && tmp.includes('sluice-nonroot-')) rmSync(tmp, { recursive: true, force: true });
  }
  assert.ok(!existsSync(dir));
});
