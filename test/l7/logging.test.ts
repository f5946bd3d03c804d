/** The workers' access log destination: batched writes, whole lines, nothing lost at a flush. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { batchBytes, workerLoggers } from '../../src/l7/logging.js';

describe('access log destination', () => {
  it('batches at most PIPE_BUF (4 KB) into a pipe, which the kernel writes whole among workers', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-log-'));
    try {
      execFileSync('mkfifo', [join(dir, 'fifo')]);
      assert.equal(batchBytes(join(dir, 'fifo')), 4096);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it('batches 16 KB into a file or a device', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-log-'));
    try {
      writeFileSync(join(dir, 'log'), '');
      assert.equal(batchBytes(join(dir, 'log')), 16 * 1024);
      assert.equal(batchBytes('/dev/null'), 16 * 1024);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });

  it('holds access lines until a batch is full, and flush() writes out every one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-log-'));
    const file = join(dir, 'access.log');
    writeFileSync(file, '');
    try {
      const l = workerLoggers({ dest: file });
      for (let i = 0; i < 3; i++) l.access.info({ status: 200, path: `/${i}` });
      assert.equal(readFileSync(file, 'utf8'), '');
      l.flush();
      const lines = readFileSync(file, 'utf8').trim().split('\n').map((x) => JSON.parse(x));
      assert.deepEqual(lines.map((x) => [x.log, x.path]), [['access', '/0'], ['access', '/1'], ['access', '/2']]);
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
