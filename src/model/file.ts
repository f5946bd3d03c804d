import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
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
    const parsed = parseDocument(text, { uniqueKeys: true });
    // A warning is an unresolved tag (`!include`, `!Ref`): the value would be read as plain text,
    // and yaml would print a multi-line process warning besides. Refused, at its line, as errors are.
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    if (problem) throw problem;
    doc = parsed.toJS();
  } catch (e) {
    const err = e as Error & { linePos?: Array<{ line: number; col: number }> };
    const pos = err.linePos?.[0];
    const message = err.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '');
    throw new ValidationError([{ path: pos ? `${path}:${pos.line}:${pos.col}` : path, message: operatorText(message) }]);
  }
  // An empty file is more likely truncated (an editor mid-save, a failed copy) than meant to
  // remove every VIP: that takes an explicit `vips: []`.
  if (doc === null || doc === undefined) throw new ValidationError([{ path, message: 'is empty (to remove every VIP, write `vips: []`)' }]);
  return doc;
}

/** The yaml library's words where they speak to its API rather than to whoever wrote the file. */
function operatorText(message: string): string {
  if (/^Unresolved tag/.test(message)) return `${message} (sluice knows no custom YAML tags)`;
  if (/multiple documents/.test(message)) return 'holds more than one YAML document (a second ---): a config is one document';
  return message;
}
