/**
 * `node --test dist/test/` (the project's `npm test`) runs every file under a
 * `test` directory as a test file. The conformance programs (fixture child,
 * baseline server, runner) are programs, not tests: run that way they would
 * wait forever or run the whole suite, so they exit at once. The test runner
 * marks its child processes with NODE_TEST_CONTEXT; the broker never passes
 * that variable on to its children.
 */
export function exitIfLoadedAsTestFile(): void {
  if (process.env.NODE_TEST_CONTEXT !== undefined) process.exit(0);
}
