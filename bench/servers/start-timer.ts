/**
 * Times a child's own start the way a gateway sees it: from a separate,
 * small Node process (as the broker and supergateway are, not from the
 * harness, whose larger process forks more slowly), on request over IPC:
 * spawn, `initialize` answered, then the first `echo` answered.
 */
import { RawStdioClient } from '../lib/mcp.js';

interface StartRequest {
  readonly argv: readonly string[];
  readonly env: NodeJS.ProcessEnv;
}

process.on('message', (request: StartRequest) => {
  void (async () => {
    const [command, ...args] = request.argv as [string, ...string[]];
    const t0 = performance.now();
    const { client, startMs } = await RawStdioClient.start(command, args, request.env);
    await client.echo();
    const firstCallMs = performance.now() - t0;
    await client.close();
    process.send?.({ startMs, firstCallMs });
  })().catch((error: unknown) => process.send?.({ error: String(error) }));
});
process.on('disconnect', () => process.exit(0));
process.send?.({ ready: true });
