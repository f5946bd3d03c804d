/** Read the whole sluice config file and validate its `l7:` section, certificates included. */
import { readConfigDocument } from '../model/file.js';
import { ValidationError } from '../model/errors.js';
import { validateL7, type L7Config } from './config.js';
import { CertStore, certWarnings } from './tls.js';

/** Certificates that load but that clients would refuse, one line each (see certWarnings). */
export function l7Warnings(config: L7Config): string[] {
  return config.listeners.flatMap((l, i) => (l.tls ? certWarnings(l.tls.certs).map((w) => `l7.listeners[${i}].${w}`) : []));
}

export function loadL7Config(path: string): L7Config {
  const doc = readConfigDocument(path);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc) || (doc as Record<string, unknown>).l7 === undefined) {
    throw new ValidationError([{ path: `${path}: l7`, message: 'is missing: sluice l7 needs an l7 section' }]);
  }
  const config = validateL7((doc as Record<string, unknown>).l7);
  // Load every certificate now, so a bad file is refused before any worker sees the config.
  const issues: Array<{ path: string; message: string }> = [];
  config.listeners.forEach((l, i) => {
    if (!l.tls) return;
    try { new CertStore(l.tls.certs); } catch (e) { issues.push({ path: `l7.listeners[${i}]`, message: (e as Error).message }); }
  });
  if (issues.length) throw new ValidationError(issues);
  return config;
}
