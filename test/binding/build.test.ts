/**
 * The BPF build cache (src/bpf/build.ts): objects are keyed by the sources beside the program,
 * the flags, the compiler and libbpf's version, so a hit costs a hash and never runs clang.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileBpf, REPO_ROOT } from '../../src/bpf/index.js';

let dir: string;      // sources
let cache: string;    // objects
let stubs: string;    // a `clang` that records being run and fails
let src: string;
const realClang = execFileSync('clang', ['--version'], { encoding: 'utf8' }).split('\n')[0];

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-build-'));
  cache = join(dir, 'cache');
  stubs = join(dir, 'bin');
  mkdirSync(join(dir, 'src'));
  mkdirSync(stubs);
  src = join(dir, 'src', 'tiny.bpf.c');
  writeFileSync(join(dir, 'src', 'tiny.h'), '#define BASE 0\n');
  writeFileSync(src, `#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "tiny.h"
#ifndef VERDICT
#define VERDICT XDP_PASS
#endif
SEC("xdp") int tiny(struct xdp_md *ctx) { return VERDICT + BASE; }
char LICENSE[] SEC("license") = "GPL";
`);
  // Answers --version as the real one does (the key includes it) and fails on anything else.
  writeFileSync(join(stubs, 'clang'), `#!/bin/sh
if [ "$1" = --version ]; then echo ${JSON.stringify(realClang)}; exit 0; fi
echo run >> ${JSON.stringify(join(dir, 'clang-ran'))}
echo "stub clang: not expected to run" >&2
exit 1
`);
  chmodSync(join(stubs, 'clang'), 0o755);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Run with the stub first on PATH: a cache miss then fails instead of compiling. */
async function withStubClang<T>(f: () => Promise<T>): Promise<T> {
  const path = process.env.PATH;
  process.env.PATH = `${stubs}:${path}`;
  try { return await f(); } finally { process.env.PATH = path; }
}

test('the same sources and flags give the same object without running clang again', async () => {
  const first = await compileBpf({ source: src, cacheDir: cache });
  assert.ok(existsSync(first));
  const mtime = statSync(first).mtimeMs;
  const again = await withStubClang(() => compileBpf({ source: src, cacheDir: cache }));
  assert.equal(again, first);
  assert.equal(statSync(first).mtimeMs, mtime, 'the object was not rewritten');
  assert.ok(!existsSync(join(dir, 'clang-ran')), 'clang did not run');
  assert.deepEqual(readdirSync(cache).filter((f) => f.endsWith('.tmp')), [], 'no temporary files left');
});

test('a changed define or a changed header beside the source gives a new object', async () => {
  const plain = await compileBpf({ source: src, cacheDir: cache });
  const dropped = await compileBpf({ source: src, cacheDir: cache, defines: { VERDICT: 1 } });
  assert.notEqual(dropped, plain);
  assert.ok(existsSync(dropped) && existsSync(plain));
  // Define order does not matter: the flags are sorted before hashing.
  const ab = await compileBpf({ source: src, cacheDir: cache, defines: { VERDICT: 1, BASE2: 0 } });
  const ba = await withStubClang(() => compileBpf({ source: src, cacheDir: cache, defines: { BASE2: 0, VERDICT: 1 } }));
  assert.equal(ab, ba);
  writeFileSync(join(dir, 'src', 'tiny.h'), '#define BASE 1\n');
  try {
    const edited = await compileBpf({ source: src, cacheDir: cache });
    assert.notEqual(edited, plain);
  } finally { writeFileSync(join(dir, 'src', 'tiny.h'), '#define BASE 0\n'); }
  assert.equal(await withStubClang(() => compileBpf({ source: src, cacheDir: cache })), plain, 'back to the old header, back to the old object');
});

test('a compile error is ECOMPILE from compileBpf with clang\'s message, and a missing source ENOENT', async () => {
  const bad = join(dir, 'src', 'bad.bpf.c');
  writeFileSync(bad, 'int broken(void) { return undeclared; }\n');
  try {
    await assert.rejects(compileBpf({ source: bad, cacheDir: cache }), { code: 'ECOMPILE', op: 'compileBpf', message: /^compileBpf: clang failed on .*bad\.bpf\.c:.*undeclared/s });
  } finally { rmSync(bad); }
  await assert.rejects(compileBpf({ source: join(dir, 'src', 'none.bpf.c'), cacheDir: cache }), { code: 'ENOENT', op: 'compileBpf' });
});

/**
 * Run compileBpf in a child whose /usr/include/bpf is replaced by `headers` (an empty dir: the
 * VM of scripts/vm, which has the host's objects but no libbpf-dev), with the stub clang.
 */
function childCompile(headers: string): { status: number | null; stdout: string; stderr: string } {
  const code = `
    import { compileBpf } from ${JSON.stringify(join(REPO_ROOT, 'dist', 'src', 'bpf', 'index.js'))};
    compileBpf({ source: ${JSON.stringify(src)}, cacheDir: ${JSON.stringify(cache)} }).then((p) => console.log(p), (e) => { console.error(e.message); process.exit(1); });`;
  return spawnSync('unshare', ['--mount', 'sh', '-c', 'mount --bind "$0" /usr/include/bpf && exec "$@"', headers, process.execPath, '--input-type=module', '-e', code], {
    encoding: 'utf8', env: { ...process.env, PATH: `${stubs}:${process.env.PATH}` },
  });
}

test('libbpf\'s version is in the key, and a host without libbpf-dev still finds the objects', async () => {
  const plain = await compileBpf({ source: src, cacheDir: cache });
  // No headers at all: the runtime library (the same version) stands in, so the key is the same.
  const none = join(dir, 'no-headers');
  mkdirSync(none, { recursive: true });
  const r = childCompile(none);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), plain);
  // Headers of another libbpf version: another key, so a cache miss (the stub then fails).
  const other = join(dir, 'other-headers');
  mkdirSync(other, { recursive: true });
  writeFileSync(join(other, 'libbpf_version.h'), '#define LIBBPF_MAJOR_VERSION 9\n#define LIBBPF_MINOR_VERSION 9\n');
  const o = childCompile(other);
  assert.notEqual(o.status, 0, `a libbpf 9.9 key must miss the cache: ${o.stdout}`);
  assert.match(o.stderr, /stub clang: not expected to run/);
});
