/** Formatting for the report's Markdown: numbers, ratios, tables, verdicts. */

export function fmt(value: number | undefined, digits = 0): string {
  if (value === undefined || !Number.isFinite(value)) return 'n/a';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function times(value: number | undefined): string {
  return value === undefined || !Number.isFinite(value) ? 'n/a' : `${fmt(value, value < 10 ? 2 : 1)}×`;
}

export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n');
}

export function mark(met: boolean | undefined): string {
  return met === undefined ? '?' : met ? 'met' : '**missed**';
}
