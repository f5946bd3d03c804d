import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { SluiceError, ValidationError } from './errors.js';

/** Read a config document: YAML (JSON is YAML too). Syntax errors name the file, line and column. */
export function readConfigDocument(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new SluiceError((e as NodeJS.ErrnoException).code ?? 'EIO', `cannot read ${path}: ${(e as Error).message}`);
  }
  try {
    const doc = parse(text, { uniqueKeys: true });
    return doc ?? {};
  } catch (e) {
    const err = e as Error & { linePos?: Array<{ line: number; col: number }> };
    const pos = err.linePos?.[0];
    throw new ValidationError([{ path: pos ? `${path}:${pos.line}:${pos.col}` : path, message: err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '') }]);
  }
}
