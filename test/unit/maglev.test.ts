/** Weighted Maglev: the properties DESIGN §5 promises. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildTable, changedSlots, owners, slotCounts, NO_REAL, type MaglevReal } from '../../src/maglev/index.js';
import { murmur3 } from '../../src/maglev/hash.js';

const M = 65537;
const reals = (n: number, weight = 1): MaglevReal[] => Array.from({ length: n }, (_, i) => ({ id: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, weight }));

test('murmur3 matches the reference vectors', () => {
  assert.equal(murmur3('', 0), 0);
  assert.equal(murmur3('', 1), 0x514e28b7);
  assert.equal(murmur3('hello', 0), 0x248bfa47);
  assert.equal(murmur3('The quick brown fox jumps over the lazy dog', 0x9747b28c), 0x2fa826cd);
});

test('equal weights give every real ⌊M/N⌋ or ⌈M/N⌉ slots', () => {
  for (const n of [1, 2, 3, 7, 100, 1000]) {
    const counts = slotCounts(buildTable(reals(n), M), n);
    assert.ok(counts.every((c) => c === Math.floor(M / n) || c === Math.ceil(M / n)), `n=${n}: ${Math.min(...counts)}..${Math.max(...counts)}`);
  }
});

/**
 * Each real's slots are within 1% of its weighted share, relative to that share; a share of a few
 * slots cannot be split finer than whole slots, so 2 slots either way always pass.
 */
function assertShares(rs: MaglevReal[], size: number): void {
  const counts = slotCounts(buildTable(rs, size), rs.length);
  const total = rs.reduce((a, r) => a + r.weight, 0);
  rs.forEach((r, i) => {
    const want = (size * r.weight) / total;
    assert.ok(Math.abs(counts[i] - want) <= Math.max(0.01 * want, 2), `${r.id} (weight ${r.weight}): ${counts[i]} slots, want ${want.toFixed(1)}`);
  });
}

test('shares follow weights within 1%', () => {
  assertShares([{ id: '10.0.0.1', weight: 1 }, { id: '10.0.0.2', weight: 2 }, { id: '10.0.0.3', weight: 3 }, { id: '10.0.0.4', weight: 10 }], M);
});

test('any prime size works: equal shares, weighted shares and small disruption at 251, 1009 and 1000003', () => {
  for (const size of [251, 1009, 1_000_003]) {
    const counts = slotCounts(buildTable(reals(7), size), 7);
    assert.ok(counts.every((c) => c === Math.floor(size / 7) || c === Math.ceil(size / 7)), `size ${size}: ${counts}`);
    assertShares(reals(7).map((r, i) => ({ ...r, weight: 1 + i })), size);
  }
  const before = reals(10), after = before.filter((r) => r.id !== '10.0.0.3');
  const a = owners(buildTable(before, 1_000_003), before), b = owners(buildTable(after, 1_000_003), after);
  const others = a.filter((id) => id !== '10.0.0.3').length;
  const moved = a.filter((id, i) => id !== '10.0.0.3' && id !== b[i]).length;
  assert.ok(moved <= 0.01 * others, `${moved} of ${others} other slots moved`);
});

test('weight 0 keeps a real out of the table', () => {
  const rs = [{ id: 'a', weight: 1 }, { id: 'b', weight: 0 }, { id: 'c', weight: 1 }];
  assert.equal(slotCounts(buildTable(rs, 7), 3)[1], 0);
});

test('no real with weight gives an empty table', () => {
  assert.ok(buildTable([], 7).every((x) => x === NO_REAL));
  assert.ok(buildTable([{ id: 'a', weight: 0 }], 7).every((x) => x === NO_REAL));
});

test('removing one of N reals moves its slots and at most 1% of the others', () => {
  for (const n of [3, 10, 100, 1000]) {
    const before = reals(n);
    const victim = before[Math.floor(n / 2)].id;
    const after = before.filter((r) => r.id !== victim);
    const a = owners(buildTable(before, M), before);
    const b = owners(buildTable(after, M), after);
    let held = 0, moved = 0;
    for (let i = 0; i < M; i++) {
      if (a[i] === victim) { held++; assert.notEqual(b[i], victim); }
      else if (a[i] !== b[i]) moved++;
    }
    assert.ok(moved <= 0.01 * (M - held), `n=${n}: ${moved} other slots moved (${((100 * moved) / (M - held)).toFixed(2)}%)`);
  }
});

test('the same reals in any order build the same table, byte for byte by owner', () => {
  const rs = reals(50).map((r, i) => ({ ...r, weight: 1 + (i % 4) }));
  const shuffled = [...rs].reverse();
  const a = owners(buildTable(rs, M), rs);
  const b = owners(buildTable(shuffled, M), shuffled);
  assert.deepEqual(a, b);
});

test('the same reals shuffled any way build the same table', () => {
  const rs = reals(200).map((r, i) => ({ ...r, weight: 1 + (i % 7) }));
  const ref = owners(buildTable(rs, M), rs);
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  for (let k = 0; k < 3; k++) {
    const shuffled = [...rs];
    for (let i = shuffled.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]]; }
    assert.deepEqual(owners(buildTable(shuffled, M), shuffled), ref);
  }
});

test('shares follow varied weights within 1% with many reals', () => {
  assertShares(reals(300).map((r, i) => ({ ...r, weight: 1 + ((i * 37) % 100) })), M);
  assertShares(reals(1000).map((r, i) => ({ ...r, weight: 1 + (i % 3) })), M);
});

test('the table for fixed inputs is stable across versions (same slots on every host)', () => {
  const t = owners(buildTable([{ id: '10.99.0.11', weight: 1 }, { id: '10.99.0.12', weight: 1 }, { id: '10.99.0.13', weight: 1 }], 13), [{ id: '10.99.0.11', weight: 1 }, { id: '10.99.0.12', weight: 1 }, { id: '10.99.0.13', weight: 1 }]);
  assert.deepEqual(t, GOLDEN_13);
});

test('changedSlots lists exactly the slots that differ', () => {
  assert.deepEqual(changedSlots(Uint32Array.from([1, 2, 3, 4]), Uint32Array.from([1, 9, 3, 8])), [1, 3]);
});

test('changedSlots over owners covers every slot the removed real held', () => {
  const before = reals(20), after = before.filter((r) => r.id !== '10.0.0.5');
  const a = owners(buildTable(before, M), before);
  const diff = new Set(changedSlots(a, owners(buildTable(after, M), after)));
  a.forEach((id, i) => { if (id === '10.0.0.5') assert.ok(diff.has(i), `slot ${i}`); });
});

test('a size that is not prime, duplicate ids and bad weights are refused', () => {
  assert.throws(() => buildTable(reals(2), 65536), /must be a prime/);
  assert.throws(() => buildTable([{ id: 'a', weight: 1 }, { id: 'a', weight: 1 }], 7), /appears twice/);
  assert.throws(() => buildTable([{ id: 'a', weight: -1 }], 7), /non-negative integer/);
});

// Recorded from this implementation; a change here changes which real every host picks.
const GOLDEN_13: Array<string | null> = ["10.99.0.12", "10.99.0.13", "10.99.0.13", "10.99.0.11", "10.99.0.12", "10.99.0.12", "10.99.0.13", "10.99.0.11", "10.99.0.11", "10.99.0.11", "10.99.0.12", "10.99.0.13", "10.99.0.11"];
