import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { SluiceError, ValidationError } from './errors.js';

/** Read a config document: YAML (JSON is YAML too). Syntax errors name the file, line and column; an empty document is refused. */
export function readConfigDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SluiceError((e as NodeJS.ErrnoException).code ?? 'EIO', `cannot read ${path}: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parse(text, { uniqueKeys: true });
  } catch (e) {
    const err = e as Error & { linePos?: Array<{ line: number; col: number }> };
    const pos = err.linePos?.[0];
    throw new ValidationError([{ path: pos ? `${path}:${pos.line}:${pos.col}` : path, message: err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '') }]);
  }
  // An empty file is more likely truncated (an editor mid-save, a failed copy) than meant to
  // remove every VIP: that takes an explicit `vips: []`.
  if (doc === null || doc === undefined) throw new ValidationError([{ path, message: 'is empty (to remove every VIP, write `vips: []`)' }]);
  return doc;
}
