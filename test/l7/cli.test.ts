/** `sluice l7` on the command line (DESIGN §2: `sluice l7 [--config FILE]`). */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { sluice } from '../support/cli.js';

describe('sluice l7 on the command line', () => {
  it('takes /etc/sluice/sluice.yaml when no --config is given', async () => {
    const r = await sluice(['l7', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--config <file>.*\(default:\s+"\/etc\/sluice\/sluice\.yaml"\)/s);
  });

  it('refuses a file without an l7 section, naming the file, as a usage error (exit 2)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-l7-cli-'));
    try {
      const f = join(dir, 'only-l4.yaml');
      writeFileSync(f, 'vips: []\n');
      const r = await sluice(['l7', '--config', f]);
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(`${f.replace(/[.]/g, '\\.')}: l7: is missing`));
    } finally { rmSync(dir, { recursive: true, force: true }); }
  });
});
