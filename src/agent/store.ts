/**
 * The desired state on disk. Written atomically (temp file, fsync, rename, fsync of the
 * directory) before the agent acknowledges a change, so an acknowledged change survives a
 * crash or a power cut.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig, SluiceError, ValidationError, type Config } from '../model/index.js';

export const STATE_FILE = 'state.json';

export function writeAtomic(path: string, data: string, mode = 0o600): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', mode);
  try {
    try {
      writeSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    // A full disk must not also keep the half-written copy (and its blocks) around.
    try { unlinkSync(tmp); } catch { /* not there */ }
    throw e;
  }
  const dir = openSync(join(path, '..'), 'r');
  try { fsyncSync(dir); } finally { closeSync(dir); }
}

export class StateStore {
  readonly path: string;
  constructor(readonly dir: string) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (e) {
      // Node's own text ("ENOENT: no such file or directory, mkdir ...", on a read-only parent) does not say what the directory is for.
      throw new SluiceError('ESTATE', `cannot make the state dir ${dir} (--state-dir): ${(e as Error).message}`);
    }
    this.path = join(dir, STATE_FILE);
  }

  /** The saved state, or null on first start. A corrupt file is an error, never silently reset. */
  load(): Config | null {
    if (!existsSync(this.path)) return null;
    let doc: unknown;
    try {
      doc = JSON.parse(readFileSync(this.path, 'utf8'));
    } catch (e) {
      throw new SluiceError('ESTATE', `${this.path} is not valid JSON (${(e as Error).message}); fix or remove it`);
    }
    try {
      return validateConfig(doc);
    } catch (e) {
      // Not the operator's input: name the file, so "unknown field" does not read as a CLI mistake.
      if (e instanceof ValidationError) throw new SluiceError('ESTATE', `${this.path} is not a state this agent can use (${e.message}); fix or remove it`);
      throw e;
    }
  }

  /** Throws ESTATE naming the file when it cannot be written (full, read-only): the change is not made. */
  save(c: Config): void {
    try {
      writeAtomic(this.path, JSON.stringify(toDocument(c), null, 2) + '\n');
    } catch (e) {
      throw new SluiceError('ESTATE', `cannot save the state to ${this.path}: ${(e as Error).message}`);
    }
  }
}

/** A Config as a document validateConfig() accepts again (durations back to text). */
export function toDocument(c: Config): Record<string, unknown> {
  return {
    dataplane: c.dataplane,
    vips: c.vips.map((v) => ({
      ...v,
      health: {
        type: v.health.type,
        ...(v.health.path !== undefined ? { path: v.health.path } : {}),
        ...(v.health.port !== undefined ? { port: v.health.port } : {}),
        interval: `${v.health.intervalMs}ms`,
        timeout: `${v.health.timeoutMs}ms`,
        rise: v.health.rise,
        fall: v.health.fall,
      },
    })),
    ...(c.l7 !== undefined ? { l7: c.l7 } : {}),
  };
}
