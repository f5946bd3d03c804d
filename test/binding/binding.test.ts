/**
 * The libbpf binding against the real kernel: every call the agent relies on, and the errors
 * bad calls must give.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Collection, Program, BpfMap, Link, XdpAction, compileBpf, ensureBpffs, pinDir, unpinAll, REPO_ROOT, codec } from '../../src/bpf/index.js';
import { addNs, delNs, inNs, runId, sh } from '../support/netns.js';

const { struct, u32, u16, u64n, pad } = codec;
const KvKey = struct({ a: u32, b: u16, _pad: pad(2) });
const KvVal = struct({ x: u64n, y: u32, z: u32 });
const FIXTURE = join(REPO_ROOT, 'test', 'fixtures', 'bpf', 'binding.bpf.c');

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

test('load lists the object maps and programs by name', () => {
  assert.deepEqual(coll.mapNames.sort(), ['arr', 'kv', 'pcpu']);
  assert.deepEqual(coll.programNames.sort(), ['xdp_count', 'xdp_swap']);
});

test('max_entries set before load takes effect', () => {
  assert.equal(coll.map('kv').maxEntries, 64);
  assert.equal(coll.map('arr').maxEntries, 8);
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
  assert.equal(afterRun.reduce((a, b) => a + b, 0), before.reduce((a, b) => a + b, 0) + 1);
});

test('BPF_PROG_TEST_RUN returns the action, the rewritten bytes and a duration', () => {
  const r = coll.program('xdp_swap').testRun(frame(0x88b5));
  assert.equal(r.action, XdpAction.TX);
  assert.deepEqual([...r.data.subarray(0, 12)], [10, 11, 12, 13, 14, 15, 1, 2, 3, 4, 5, 6]);
  assert.equal(r.data.length, 64);
  assert.ok(r.durationNs >= 0);
  assert.equal(coll.program('xdp_swap').testRun(frame(0x0800)).action, XdpAction.PASS);
});

test('read-only globals set before load change the program', async () => {
  const c = Collection.load(obj, { globals: { verdict: Buffer.from([XdpAction.DROP, 0, 0, 0]) } });
  try {
    assert.equal(c.program('xdp_swap').testRun(frame(0x0800)).action, XdpAction.DROP);
  } finally { c.close(); }
});

test('a global of the wrong size is refused with EINVAL', () => {
  assert.throws(() => Collection.load(obj, { globals: { verdict: Buffer.alloc(2) } }), { code: 'EINVAL', message: /verdict is 4 bytes/ });
});

test('an unknown global is refused with ENOENT naming it', () => {
  assert.throws(() => Collection.load(obj, { globals: { nope: Buffer.alloc(4) } }), { code: 'ENOENT', message: /nope/ });
});

test('an unknown map name is a clear ENOENT error listing the maps', () => {
  assert.throws(() => coll.map('nope'), { code: 'ENOENT', message: /no map named "nope".*arr/ });
  assert.throws(() => Collection.load(obj, { maxEntries: { nope: 4 } }), { code: 'ENOENT', message: /nope/ });
});

test('a missing object file is ENOENT from bpf_object__open_file', () => {
  assert.throws(() => Collection.load('/nonexistent/x.bpf.o'), { code: 'ENOENT', op: 'bpf_object__open_file' });
});

test('a key of the wrong size is refused before any syscall', () => {
  assert.throws(() => coll.map('kv').lookup(Buffer.alloc(3)), { code: 'EINVAL', message: /key is 3 bytes.*8/ });
  assert.throws(() => coll.map('kv').update(Buffer.alloc(8), Buffer.alloc(4)), { code: 'EINVAL', message: /value is 4 bytes/ });
});

test('a codec whose size does not match the map is refused', () => {
  assert.throws(() => coll.map('kv').typed(u32, KvVal), /key codec is 4 bytes/);
});

test('an out-of-range array index is a kernel error with its errno name', () => {
  assert.throws(() => coll.map('arr').update(u32Key(100), Buffer.alloc(8)), { code: 'E2BIG', op: 'bpf_map_update_elem' });
});

function u32Key(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

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
    m.close();
    p.close();
    coll.map('arr').typed(u32, u64n).set(2, 0);
  } finally { unpinAll(dir); }
  assert.throws(() => BpfMap.openPinned(`${dir}/arr`), { code: 'ENOENT', op: 'bpf_obj_get' });
});

test('XDP attaches to a veth in a namespace through a pinned link, and the link swaps programs atomically', () => {
  ensureBpffs();
  const id = runId();
  const [a, b] = [addNs(`slt-a-${id}`), addNs(`slt-b-${id}`)];
  const dir = pinDir(`/sys/fs/bpf/sluice-test-${id}`);
  try {
    inNs(a, 'ip', ['link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb', 'netns', b]);
    inNs(a, 'ip', ['addr', 'add', '10.250.0.1/24', 'dev', 'va']);
    inNs(b, 'ip', ['addr', 'add', '10.250.0.2/24', 'dev', 'vb']);
    inNs(a, 'ip', ['link', 'set', 'va', 'up']);
    inNs(b, 'ip', ['link', 'set', 'vb', 'up']);
    coll.program('xdp_swap').pin(`${dir}/prog`);
    // Attaching must happen inside the namespace: a child process entered into it pins the link.
    const child = spawnSync('nsenter', [`--net=/run/netns/${a}`, process.execPath, '--input-type=module', '-e', `
      import { Program } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'bpf', 'index.js'))};
      const link = Program.openPinned(${JSON.stringify(`${dir}/prog`)}).attachXdp('va', 'native');
      link.pin(${JSON.stringify(`${dir}/link`)});
      console.log(JSON.stringify(link.info()));`], { encoding: 'utf8' });
    assert.equal(child.status, 0, child.stderr);
    const info = JSON.parse(child.stdout);
    assert.equal(info.progId, coll.program('xdp_swap').id);
    assert.equal(info.ifindex, Number(inNs(a, 'ip', ['-o', 'link', 'show', 'dev', 'va']).split(':')[0]));
    assert.match(inNs(a, 'ip', ['link', 'show', 'dev', 'va']), new RegExp(`xdp.*id ${coll.program('xdp_swap').id}`, 's'));

    const link = Link.openPinned(`${dir}/link`);
    link.update(coll.program('xdp_count'), coll.program('xdp_swap'));
    assert.equal(link.info().progId, coll.program('xdp_count').id);
    const counter = coll.map('arr').typed(u32, u64n);
    const before = counter.get(0)!;
    inNs(b, 'ping', ['-c', '3', '-i', '0.05', '-W', '1', '10.250.0.1']);
    assert.ok(counter.get(0)! >= before + 3, 'the replacement program saw the pings');
    // Replacing with a stale expected program is refused: the swap is compare-and-exchange.
    assert.throws(() => link.update(coll.program('xdp_swap'), coll.program('xdp_swap')), { code: 'EPERM' });
    link.detach();
    assert.doesNotMatch(inNs(a, 'ip', ['link', 'show', 'dev', 'va']), /xdp/);
    link.close();
  } finally {
    unpinAll(dir);
    delNs(a);
    delNs(b);
  }
});

test('without root privileges loading fails with EPERM, not a crash', () => {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `
    import { Collection } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'bpf', 'index.js'))};
    try { Collection.load(${JSON.stringify(obj)}); console.log('loaded'); }
    catch (e) { console.log(e.code + ' ' + e.op); }`], { encoding: 'utf8', uid: 65534, gid: 65534 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout.trim(), /^EPERM bpf_object__load$/);
});
