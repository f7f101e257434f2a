const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parses a duration such as `30s`, `15m`, `1h`, `90d`, `500ms` or a compound `1h30m`
 * into milliseconds. Returns undefined for anything else.
 */
export function parseDuration(text: string): number | undefined {
  const trimmed = text.trim();
  if (trimmed === '') return undefined;
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let consumed = 0;
  for (let match = part.exec(trimmed); match !== null; match = part.exec(trimmed)) {
    const [whole, amount, unit] = match;
    total += Number(amount) * (UNIT_MS[unit as string] as number);
    consumed += whole.length;
  }
  return consumed === trimmed.length ? Math.round(total) : undefined;
}
