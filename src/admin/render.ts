/** How the admin commands print: aligned text tables for people, one JSON document for programs (`--json`). */

/** A time for people: UTC to the second; `-` for none. */
export function shownTime(ms: number | null): string {
  return ms === null
    ? '-'
    : new Date(ms)
        .toISOString()
        .replace('T', ' ')
        .replace(/\.\d+Z$/, 'Z');
}

/** A time for programs: ISO 8601 in UTC, or null. */
export function jsonTime(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/** Columns padded to their widest cell, two spaces apart; `empty` when there are no rows. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], empty: string): string {
  if (rows.length === 0) return `${empty}\n`;
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n') + '\n';
}

/** The `--json` document: pretty, one trailing newline. */
export function jsonDocument(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
