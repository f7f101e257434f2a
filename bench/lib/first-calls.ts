/**
 * Issue 16: what a new user's first call costs over an existing user's. Each
 * new user is signed in first (the OAuth flow is not the call); then, timed,
 * half of them: their first 2026-07-28 call and the next one; the other
 * half: a legacy session opened (initialize + initialized), its first call
 * and the next one.
 */
import type http from 'node:http';
import { httpRequest, LEGACY_VERSION, RawLegacyClient, RawModernClient } from './mcp.js';
import { summarize, type Summary } from './stats.js';

export interface FirstCallFigure {
  /** `modern · shared`, `legacy · stdio`, ... */
  readonly target: string;
  readonly users: number;
  /** A new user's first call. */
  readonly first: Summary;
  /** The same user's next call: an existing user's. */
  readonly next: Summary;
  /** First minus next, per user. */
  readonly added: Summary;
  /** Legacy: opening the session (initialize and initialized) before the first call. */
  readonly open?: Summary;
}

export interface FirstCallMode {
  readonly mode: string;
  readonly url: URL;
  readonly agent: http.Agent;
  /** One bearer token per new user, each signed in and not used yet. */
  readonly bearers: readonly string[];
}

/** The shared upstream alone, with users' Forgejo tokens: the floor of `modern · shared`'s first call. */
export interface FirstCallDirect {
  readonly url: URL;
  readonly agent: http.Agent;
  readonly forgejoTokens: readonly string[];
}

const jsonRpc = (id: number | undefined, method: string, params?: unknown): string =>
  JSON.stringify({ jsonrpc: '2.0', ...(id === undefined ? {} : { id }), method, ...(params === undefined ? {} : { params }) });

/**
 * What the broker does for a new user's first modern call, straight at the
 * upstream: a new session (initialize, initialized), its tool list, the
 * call; then the next call. Answers are only checked for their status.
 */
async function directNewSession(direct: FirstCallDirect, token: string): Promise<{ first: number; next: number }> {
  const base = RawLegacyClient.baseHeaders({ url: direct.url, bearer: token });
  const send = async (headers: Record<string, string>, body: string): Promise<Record<string, string | string[] | undefined>> => {
    const reply = await httpRequest(direct.agent, direct.url, 'POST', headers, body);
    if (reply.status !== 200 && reply.status !== 202) throw new Error(`the upstream answered ${reply.status}`);
    return reply.headers;
  };
  const echo = (id: number): string => jsonRpc(id, 'tools/call', { name: 'echo', arguments: { text: 'hello' } });
  const t0 = performance.now();
  const opened = await send(
    base,
    jsonRpc(1, 'initialize', { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: { name: 'bench', version: '1' } }),
  );
  const headers = { ...base, 'mcp-session-id': String(opened['mcp-session-id']), 'mcp-protocol-version': LEGACY_VERSION };
  await send(headers, jsonRpc(undefined, 'notifications/initialized'));
  await send(headers, jsonRpc(2, 'tools/list'));
  await send(headers, echo(3));
  const t1 = performance.now();
  await send(headers, echo(4));
  const t2 = performance.now();
  await httpRequest(direct.agent, direct.url, 'DELETE', headers).catch(() => undefined);
  return { first: (t1 - t0) * 1000, next: (t2 - t1) * 1000 };
}

async function timed<T>(work: () => Promise<T>): Promise<{ us: number; value: T }> {
  const t0 = performance.now();
  const value = await work();
  return { us: (performance.now() - t0) * 1000, value };
}

/** The modes interleaved user by user, so that load on the machine falls on both alike. */
export async function measureFirstCalls(modes: readonly FirstCallMode[], direct?: FirstCallDirect): Promise<FirstCallFigure[]> {
  const samples = new Map<string, { first: number[]; next: number[]; open: number[] }>();
  const sample = (target: string) => {
    let found = samples.get(target);
    if (found === undefined) samples.set(target, (found = { first: [], next: [], open: [] }));
    return found;
  };
  const users = Math.min(...modes.map((mode) => mode.bearers.length));
  for (let i = 0; i + 1 < users; i += 2) {
    for (const mode of modes) {
      const target = { url: mode.url, bearer: mode.bearers[i] as string };
      const modern = new RawModernClient(target, mode.agent);
      const modernSamples = sample(`modern · ${mode.mode}`);
      modernSamples.first.push((await timed(() => modern.echo())).us);
      modernSamples.next.push((await timed(() => modern.echo())).us);
    }
    const token = direct?.forgejoTokens[i];
    if (direct !== undefined && token !== undefined) {
      const floor = await directNewSession(direct, token);
      sample('direct · shared (a new upstream session)').first.push(floor.first);
      sample('direct · shared (a new upstream session)').next.push(floor.next);
    }
    for (const mode of modes) {
      const target = { url: mode.url, bearer: mode.bearers[i + 1] as string };
      const legacySamples = sample(`legacy · ${mode.mode}`);
      const opened = await timed(() => RawLegacyClient.open(target, mode.agent));
      legacySamples.open.push(opened.us);
      legacySamples.first.push((await timed(() => opened.value.echo())).us);
      legacySamples.next.push((await timed(() => opened.value.echo())).us);
      await opened.value.close();
    }
  }
  return [...samples].map(([target, { first, next, open }]) => ({
    target,
    users: first.length,
    first: summarize(first),
    next: summarize(next),
    added: summarize(first.map((us, i) => us - (next[i] as number))),
    ...(open.length === 0 ? {} : { open: summarize(open) }),
  }));
}
