/**
 * Every bench prints one table for people and, with --json, one JSON document for scripts.
 * Ratios are against a reference measured in the same run: these machines are noisy.
 */
export interface BenchTable {
  title: string;
  columns: string[];
  rows: Array<Array<string | number>>;
  /** Free-form notes printed under the table (targets, what the reference is). */
  notes?: string[];
  /** Machine-readable results. */
  data: unknown;
}

export function wantJson(argv = process.argv): boolean {
  return argv.includes('--json');
}

function cell(v: string | number): string {
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 2 : 1);
  return v;
}

export function formatTable(t: BenchTable): string {
  const rows = t.rows.map((r) => r.map(cell));
  const widths = t.columns.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [
    `== ${t.title}`,
    line(t.columns),
    widths.map((w) => '-'.repeat(w)).join('  '),
    ...rows.map(line),
    ...(t.notes ?? []).map((n) => `   ${n}`),
    '',
  ].join('\n');
}

/** Print tables as text, or as one JSON array with --json. */
export function printTables(tables: BenchTable[], argv = process.argv): void {
  if (wantJson(argv)) process.stdout.write(JSON.stringify(tables.map((t) => ({ title: t.title, columns: t.columns, rows: t.rows, data: t.data })), null, 2) + '\n');
  else for (const t of tables) process.stdout.write(formatTable(t) + '\n');
}
