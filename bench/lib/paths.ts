import { fileURLToPath } from 'node:url';

/** The repository root (this file runs from dist/bench/lib/). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const RESULTS_DIR = `${ROOT}bench/results`;
export const LOG_DIR = `${RESULTS_DIR}/logs`;
/** The stand-in forgejo-mcp every baseline runs: a real SDK stdio server. */
export const STANDIN_CHILD = `${ROOT}dist/src/standin/forgejo-mcp.js`;
/** A few-MB stdio MCP server in bash, for the 1,000-session memory figure. */
export const TINY_CHILD = `${ROOT}bench/tiny-child.sh`;
/** The broker's entry point; BENCH_BROKER_CLI points the bench at another build of it (A/B of a change). */
export const BROKER_CLI = process.env.BENCH_BROKER_CLI ?? `${ROOT}dist/src/cli.js`;
export const PROBE = `${ROOT}dist/bench/probe.js`;
export const BARE_HTTP = `${ROOT}dist/bench/servers/bare-http.js`;
export const START_TIMER = `${ROOT}dist/bench/servers/start-timer.js`;
export const SDK_TRANSPORT = `${ROOT}dist/bench/servers/sdk-transport.js`;
export const BARE_BRIDGE = `${ROOT}dist/bench/servers/bare-bridge.js`;
export const SUPERGATEWAY_DIR = `${ROOT}bench/supergateway`;
export const SUPERGATEWAY = `${SUPERGATEWAY_DIR}/node_modules/supergateway/dist/index.js`;
