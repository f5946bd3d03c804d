/** Human tables for the CLI; `--json` bypasses all of this. */
export function table(columns: string[], rows: Array<Array<string | number>>): string {
  const text = rows.map((r) => r.map((c) => String(c)));
  const widths = columns.map((c, i) => Math.max(c.length, ...text.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(columns), ...text.map(line)].join('\n') + '\n';
}

export function human(n: number): string {
  if (n < 10_000) return String(n);
  const units = ['k', 'M', 'G', 'T'];
  let v = n, u = -1;
  while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
  return `${v.toFixed(v < 10 ? 2 : 1)}${units[u]}`;
}
