/** Raw legacy-era HTTP for the session's POST stream tests: a session, POSTs and an SSE reader that yields events as they come. */
import assert from 'node:assert/strict';
import type { TestBroker, TestUser } from '../support/brokers.js';

export const PROTOCOL_VERSION = '2025-11-25';

export const ACCEPT_BOTH = 'application/json, text/event-stream';

export interface SseEvent {
  readonly id?: string;
  readonly retry?: number;
  /** The data line's text; '' for a priming event. */
  readonly data: string;
}

export interface JsonRpcOut {
  readonly id?: string | number;
  readonly method?: string;
  readonly result?: { content?: { text: string }[] };
  readonly error?: { code: number; message: string };
}

/** The SSE events of a response body, read as they arrive; comments (keep-alives) are skipped. */
export class SseReader {
  readonly #reader: ReadableStreamDefaultReader<Uint8Array>;
  readonly #decoder = new TextDecoder();
  #buffer = '';

  constructor(res: Response) {
    assert.equal(res.headers.get('content-type'), 'text/event-stream');
    this.#reader = (res.body as ReadableStream<Uint8Array>).getReader();
  }

  /** The next event; undefined once the stream has ended. */
  async next(): Promise<SseEvent | undefined> {
    for (;;) {
      const end = this.#buffer.indexOf('\n\n');
      if (end !== -1) {
        const block = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const event = parseEvent(block);
        if (event !== undefined) return event;
        continue;
      }
      const { value, done } = await this.#reader.read();
      if (done) return undefined;
      this.#buffer += this.#decoder.decode(value, { stream: true });
    }
  }

  /** The next event carrying a message, parsed. */
  async nextMessage(): Promise<{ eventId: string | undefined; message: JsonRpcOut }> {
    for (;;) {
      const event = await this.next();
      assert.ok(event !== undefined, 'the stream ended before the next message');
      if (event.data !== '') return { eventId: event.id, message: JSON.parse(event.data) as JsonRpcOut };
    }
  }

  cancel(): Promise<void> {
    return this.#reader.cancel().catch(() => undefined);
  }
}

function parseEvent(block: string): SseEvent | undefined {
  let id: string | undefined;
  let retry: number | undefined;
  let data: string | undefined;
  for (const line of block.split('\n')) {
    if (line.startsWith('id: ')) id = line.slice(4);
    else if (line.startsWith('retry: ')) retry = Number(line.slice(7));
    else if (line.startsWith('data:')) data = line.slice(line.startsWith('data: ') ? 6 : 5);
  }
  if (data === undefined) return undefined;
  return { ...(id === undefined ? {} : { id }), ...(retry === undefined ? {} : { retry }), data };
}

export function post(
  broker: TestBroker,
  user: TestUser,
  body: unknown,
  headers: Record<string, string>,
  signal?: AbortSignal,
): Promise<Response> {
  return fetch(broker.mcpUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: ACCEPT_BOTH, authorization: `Bearer ${user.bearer}`, ...headers },
    body: JSON.stringify(body),
    ...(signal === undefined ? {} : { signal }),
  });
}

export function resume(broker: TestBroker, user: TestUser, session: Record<string, string>, lastEventId: string): Promise<Response> {
  return fetch(broker.mcpUrl, {
    headers: { accept: 'text/event-stream', authorization: `Bearer ${user.bearer}`, ...session, 'last-event-id': lastEventId },
  });
}

/** A session of a client that can answer elicitations: its headers for every later request. */
export async function openSession(broker: TestBroker, user: TestUser, protocolVersion = PROTOCOL_VERSION): Promise<Record<string, string>> {
  const initialize = {
    jsonrpc: '2.0',
    id: 0,
    method: 'initialize',
    params: { protocolVersion, capabilities: { elicitation: { form: {} } }, clientInfo: { name: 'raw', version: '1' } },
  };
  const res = await post(broker, user, initialize, {});
  assert.equal(res.status, 200);
  await res.text();
  const session = { 'mcp-session-id': res.headers.get('mcp-session-id') as string, 'mcp-protocol-version': protocolVersion };
  assert.equal((await post(broker, user, { jsonrpc: '2.0', method: 'notifications/initialized' }, session)).status, 202);
  return session;
}

export function toolCall(id: number, name: string, args: Record<string, unknown> = {}): unknown {
  return { jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } };
}
