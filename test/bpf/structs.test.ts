/** src/dataplane/xdp/structs.ts mirrors bpf/structs.h: the kernel's view of each map agrees. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { compileBpf } from '../../src/bpf/build.js';
import { Collection } from '../../src/bpf/collection.js';
import { MAP_CODECS, GLOBAL_COUNTERS, statsIndex } from '../../src/dataplane/xdp/structs.js';

const LIMITS = { maxVips: 8, maxReals: 32, ringSize: 13, flowTableSize: 1024 };
let col: Collection;
before(async () => {
  col = Collection.load(await compileBpf({ source: 'balancer', defines: { MAX_VIPS: 8, MAX_REALS: 32, RING_SIZE: 13, FLOW_TABLE_SIZE: 1024 } }));
});
after(() => col?.close());

test('the program has exactly the maps the codecs describe', () => {
  assert.deepEqual([...col.mapNames].sort(), Object.keys(MAP_CODECS).sort());
});

test('every map\'s key and value sizes are its codecs\' sizes', () => {
  for (const [name, c] of Object.entries(MAP_CODECS)) {
    const m = col.map(name);
    assert.equal(m.keySize, c.key.size, `${name} key`);
    assert.equal(m.valueSize, c.value.size, `${name} value`);
  }
});

test('the map sizes follow the compile-time limits', () => {
  assert.equal(col.map('vips').maxEntries, LIMITS.maxVips);
  assert.equal(col.map('rings').maxEntries, LIMITS.maxVips * LIMITS.ringSize);
  assert.equal(col.map('reals').maxEntries, LIMITS.maxReals);
  assert.equal(col.map('flows').maxEntries, LIMITS.flowTableSize);
  assert.equal(col.map('stats').maxEntries, statsIndex.size(LIMITS));
  assert.equal(statsIndex.size(LIMITS), LIMITS.maxVips + LIMITS.maxReals + GLOBAL_COUNTERS.length);
});
