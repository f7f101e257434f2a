/**
 * A test that needs a tool installed outside npm (Chromium, the third-party
 * clients) is skipped on a developer machine without it, with the command
 * that installs it. In CI it is never skipped: .ci/run installs everything,
 * so a missing tool there fails the test instead of hiding it.
 */
export function skipIfMissing(missing: string | false): string | false {
  if (missing === false || process.env.CI === 'true') return false;
  return missing;
}
