/**
 * A call whose response stream was cut with the broker process that carried
 * it (a replica killed, a restart) is answered with an error when the client
 * resumes the stream, wherever the resumption lands: the SDK client fails a
 * call only when an answer arrives, so without one it would wait for its own
 * timeout. Both upstream modes; the process "dies" by a restart after the
 * client's connection was cut, so its events are gone.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ProtocolError, type ReconnectionScheduler } from '@modelcontextprotocol/client';
import { JsonRpcCode } from '../../src/errors/jsonrpc-codes.js';
import { E2E_USERS, e2eUser, standinUpstreamCommandLine, startBroker, TEST_UPSTREAM } from '../support/brokers.js';
import { eventually } from '../support/host.js';
import { connect, E2EOAuthProvider, getMe, httpStatus, signInWithSdk, text } from '../support/mcp-clients.js';
import { TestBrowser } from '../support/oauth.js';
import { standinChildCommand } from '../../src/demo.js';

/** A GET the client sent, as the broker answered it. */
interface AnsweredGet {
  readonly lastEventId: string | null;
  readonly status: number;
}

/**
 * A fetch whose response to the next `sleep` call the test can cut, as a dying
 * process's connection is; it notes how each GET was answered.
 */
function cuttableFetch(): { fetch: typeof fetch; cut: () => void; gets: AnsweredGet[] } {
  const cutter = new AbortController();
  const gets: AnsweredGet[] = [];
  let armed = true;
  const cuttable: typeof fetch = async (input, init) => {
    const isSleep = typeof init?.body === 'string' && init.body.includes('"sleep"');
    if (!isSleep || !armed) {
      const response = await fetch(input, init);
      if (init?.method === 'GET') gets.push({ lastEventId: new Headers(init.headers).get('last-event-id'), status: response.status });
      return response;
    }
    armed = false;
    const signals = [cutter.signal, ...(init?.signal ? [init.signal] : [])];
    return fetch(input, { ...init, signal: AbortSignal.any(signals) });
  };
  return { fetch: cuttable, cut: () => cutter.abort(new Error('connection cut')), gets };
}

for (const mode of ['stdio', 'shared'] as const) {
  // Under BROKER_TEST_UPSTREAM=http the harness runs every broker in shared mode: the stdio case is not one there.
  const skip = mode === 'stdio' && TEST_UPSTREAM === 'http';
  test(
    `${mode} mode: the resumption of a call's stream cut with its broker process answers the call with an error at once`,
    { skip },
    async (t) => {
      const harness = await startBroker({
        wiring: 'signed-in',
        name: `lost-stream-${mode}`,
        users: E2E_USERS,
        childCommand: standinChildCommand({ testTools: true }),
        env: mode === 'shared' ? { BROKER_UPSTREAM_COMMAND: standinUpstreamCommandLine({ testTools: true }) } : {},
      });
      t.after(() => harness.close());
      const mcpUrl = new URL(`${harness.url}/mcp`);
      const erin = e2eUser('erin');
      const provider = new E2EOAuthProvider({ clientName: `lost stream ${mode}` });
      const first = await signInWithSdk(mcpUrl, provider, new TestBrowser(), erin);
      await first.client.close();

      const { fetch: cuttable, cut, gets } = cuttableFetch();
      // The client's reconnection waits until the process that held the stream has ended.
      let reconnect: (() => void) | undefined;
      let asked: (() => void) | undefined;
      const reconnectAsked = new Promise<void>((resolve) => (asked = resolve));
      const scheduler: ReconnectionScheduler = (run, delay) => {
        if (reconnect !== undefined) {
          // Any later one (the GET stream's, cut by the restart) goes as the SDK would.
          const timer = setTimeout(run, delay);
          return () => clearTimeout(timer);
        }
        reconnect = run;
        asked?.();
        return undefined;
      };
      const { client, transport } = await connect(mcpUrl, provider, 'legacy', { fetch: cuttable, reconnectionScheduler: scheduler });
      t.after(() => client.close());
      const sessionId = transport.sessionId;
      // An event on the GET stream, so the client resumes that stream too, from an id of this process. A change made
      // before the broker (or, in shared mode, the upstream) holds its GET stream goes nowhere: tools are added until one arrives.
      let listChanged = false;
      client.setNotificationHandler('notifications/tools/list_changed', () => {
        listChanged = true;
      });
      let added = 0;
      await eventually(async () => {
        if (!listChanged) await client.callTool({ name: 'add_tool', arguments: { name: `added_before_restart_${++added}` } });
        return listChanged;
      }, 'a tool list change on the GET stream');
      let started: (() => void) | undefined;
      const running = new Promise<void>((resolve) => (started = resolve));
      const call = client.callTool({ name: 'sleep', arguments: { ms: 300 } }, { onprogress: () => started?.(), timeout: 120_000 });
      await running;
      cut();
      await reconnectAsked;
      // The process that held the stream ends; the resumption reaches the next one.
      await harness.restart();
      reconnect?.();
      await assert.rejects(call, (error: unknown) => {
        assert.ok(error instanceof ProtocolError, `a JSON-RPC error, not ${String(error)}`);
        assert.equal(error.code, JsonRpcCode.internalError);
        assert.match(error.message, /stopped before it answered/);
        return true;
      });

      if (mode === 'stdio') {
        // The session died with its child: the next request is told so, and the client starts a new one.
        await assert.rejects(getMe(client), (error: unknown) => httpStatus(error) === 404);
      } else {
        // The session is state: the next broker carries it on.
        assert.deepEqual(await getMe(client), { login: erin.login, id: erin.id });
        assert.equal(transport.sessionId, sessionId);
        assert.equal(text(await client.callTool({ name: 'echo', arguments: { text: 'after' } })), 'after');
        // The GET stream's resumption from the old process's id: its events are gone, so a fresh stream, not a refusal.
        await eventually(() => gets.some((get) => get.lastEventId?.startsWith('_GET_stream#') === true), 'the GET stream resumed');
        assert.deepEqual(
          gets.filter((get) => get.lastEventId?.startsWith('_GET_stream#') === true).map((get) => get.status),
          [200],
        );
      }
    },
  );
}
