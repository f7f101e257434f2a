#!/usr/bin/env node
/**
 * The conformance fixture as a legacy stdio MCP server: the child the broker
 * spawns for the through-broker conformance runs
 * (`BROKER_CHILD_COMMAND="node dist/test/conformance/fixture.js"`).
 *
 * Like forgejo-mcp it speaks only the legacy era (it expects `initialize`),
 * writes only JSON-RPC to stdout, logs to stderr, and exits when stdin closes.
 * `FORGEJO_URL` and `FORGEJO_ACCESS_TOKEN` from the broker are accepted and
 * ignored: the fixture talks to no forge.
 */
import { randomBytes } from 'node:crypto';
import { StdioServerTransport } from '@modelcontextprotocol/server/stdio';
import { createFixtureServer, createFixtureState } from './fixture-server.js';
import { exitIfLoadedAsTestFile } from './not-a-test.js';

exitIfLoadedAsTestFile();

const server = createFixtureServer({
  state: createFixtureState(),
  requestStateKey: randomBytes(32).toString('hex'),
});
const transport = new StdioServerTransport();
transport.onclose = () => process.exit(0);
process.stdin.on('end', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
server.connect(transport).catch((error: unknown) => {
  process.stderr.write(`conformance fixture: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
