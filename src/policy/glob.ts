/**
 * Compiles comma-separated glob patterns over names into one test: `*` is
 * any run of characters, `?` one character, everything else itself; a name
 * matches when one pattern matches all of it.
 */
export function globMatcher(patterns: readonly string[]): (name: string) => boolean {
  if (patterns.length === 0) return () => false;
  const source = patterns
    .map((pattern) => [...pattern].map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join(''))
    .join('|');
  const regex = new RegExp(`^(?:${source})$`, 's');
  return (name) => regex.test(name);
}
