/**
 * The harness's own MCP clients. The "raw" ones send fixed, minimal bytes
 * (node:http with keep-alive, or JSON lines on a child's stdin) so that the
 * load generator costs little next to what it measures; the SDK ones are
 * what an application would use. Every call checks its answer.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { StdioClientTransport } from '@modelcontextprotocol/client/stdio';

export const LEGACY_VERSION = '2025-11-25';
export const MODERN_VERSION = '2026-07-28';
const REQUEST_TIMEOUT_MS = 60_000;
const CLIENT_INFO = { name: 'forgejo-mcp-broker-bench', version: '1.0.0' };

/** One kind of MCP connection the load loops drive. */
export interface EchoClient {
  /** One small `tools/call` of `echo`; resolves when the checked answer is in. */
  echo(): Promise<void>;
  /** One `tools/call` of `big`; resolves with the size of the text received. */
  big(bytes: number): Promise<number>;
  close(): Promise<void>;
}

export interface HttpReply {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A keep-alive agent per target, as many sockets as the concurrency asks. */
export function keepAliveAgent(): http.Agent {
  return new http.Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY, maxFreeSockets: 1024 });
}

export function httpRequest(
  agent: http.Agent,
  url: URL,
  method: string,
  headers: Record<string, string>,
  body?: string,
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    // No request of the bench may hang the run: a minute is far beyond any answer measured here.
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer from ${url.href} within ${REQUEST_TIMEOUT_MS} ms`)));
    req.end(body);
  });
}

/** The JSON-RPC messages of a response, whether JSON or an SSE stream. */
export function messagesOf(reply: HttpReply): Record<string, unknown>[] {
  const text = reply.body.toString('utf8');
  const type = String(reply.headers['content-type'] ?? '');
  if (type.startsWith('text/event-stream')) {
    const messages: Record<string, unknown>[] = [];
    for (const event of text.split('\n\n')) {
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(line.startsWith('data: ') ? 6 : 5))
        .join('\n');
      if (data !== '') messages.push(JSON.parse(data) as Record<string, unknown>);
    }
    return messages;
  }
  return text === '' ? [] : [JSON.parse(text) as Record<string, unknown>];
}

/** The text of the `tools/call` result with this id, or an error naming what came instead. */
export function toolText(messages: readonly Record<string, unknown>[], id: number, where: string): string {
  const answer = messages.find((message) => message.id === id);
  const result = answer?.result as { content?: { type: string; text?: string }[] } | undefined;
  const text = result?.content?.[0]?.text;
  if (typeof text !== 'string') throw new Error(`${where}: no tool result for id ${id}: ${JSON.stringify(messages).slice(0, 300)}`);
  return text;
}

function echoCall(id: number, text: string): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text } } });
}

function bigCall(id: number, bytes: number): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'big', arguments: { bytes } } });
}

export interface HttpTarget {
  /** The MCP endpoint. */
  readonly url: URL;
  /** A broker bearer token, if the target wants one. */
  readonly bearer?: string;
  /** What the echo tool answers: the text sent, or a fixed text (the tiny child says "ok"). */
  readonly echoReply?: string;
}

const ECHO_TEXT = 'hello from the bench';

/** A legacy (session) Streamable HTTP client: initialize once, then POSTs on the session. */
export class RawLegacyClient implements EchoClient {
  private nextId = 2;

  private constructor(
    private readonly target: HttpTarget,
    private readonly agent: http.Agent,
    private readonly headers: Record<string, string>,
    readonly sessionId: string,
  ) {}

  static baseHeaders(target: HttpTarget): Record<string, string> {
    return {
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      ...(target.bearer === undefined ? {} : { authorization: `Bearer ${target.bearer}` }),
    };
  }

  /** Starts a session: initialize (timed by the caller) and notifications/initialized. */
  static async open(target: HttpTarget, agent: http.Agent): Promise<RawLegacyClient> {
    const base = RawLegacyClient.baseHeaders(target);
    const init = await httpRequest(
      agent,
      target.url,
      'POST',
      base,
      JSON.stringify({
        jsonrpc: '2.0',
        id: 1,
        method: 'initialize',
        params: { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: CLIENT_INFO },
      }),
    );
    const sessionId = init.headers['mcp-session-id'];
    if (init.status !== 200 || typeof sessionId !== 'string')
      throw new Error(`initialize at ${target.url.href}: HTTP ${init.status} ${init.body.toString().slice(0, 300)}`);
    const answer = messagesOf(init).find((message) => message.id === 1);
    const version = (answer?.result as { protocolVersion?: string } | undefined)?.protocolVersion ?? LEGACY_VERSION;
    const headers = { ...base, 'mcp-session-id': sessionId, 'mcp-protocol-version': version };
    const initialized = await httpRequest(
      agent,
      target.url,
      'POST',
      headers,
      JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
    );
    if (initialized.status !== 202) throw new Error(`notifications/initialized: HTTP ${initialized.status}`);
    return new RawLegacyClient(target, agent, headers, sessionId);
  }

  async echo(): Promise<void> {
    const id = this.nextId++;
    const reply = await httpRequest(this.agent, this.target.url, 'POST', this.headers, echoCall(id, ECHO_TEXT));
    const text = toolText(messagesOf(reply), id, this.target.url.href);
    if (text !== (this.target.echoReply ?? ECHO_TEXT)) throw new Error(`echo answered ${text}`);
  }

  async big(bytes: number): Promise<number> {
    const id = this.nextId++;
    const reply = await httpRequest(this.agent, this.target.url, 'POST', this.headers, bigCall(id, bytes));
    return toolText(messagesOf(reply), id, this.target.url.href).length;
  }

  /** DELETE: the gateway ends the session and its child. */
  async close(): Promise<void> {
    await httpRequest(this.agent, this.target.url, 'DELETE', this.headers).catch(() => undefined);
  }
}

/** A 2026-07-28 client: no session, every request carries its version and client info. */
export class RawModernClient implements EchoClient {
  private nextId = 1;
  private readonly headers: Record<string, string>;

  constructor(
    private readonly target: HttpTarget,
    private readonly agent: http.Agent,
  ) {
    this.headers = { ...RawLegacyClient.baseHeaders(target), 'mcp-protocol-version': MODERN_VERSION, 'mcp-method': 'tools/call' };
  }

  private body(id: number, name: string, args: Record<string, unknown>): string {
    return JSON.stringify({
      jsonrpc: '2.0',
      id,
      method: 'tools/call',
      params: {
        name,
        arguments: args,
        _meta: {
          'io.modelcontextprotocol/protocolVersion': MODERN_VERSION,
          'io.modelcontextprotocol/clientInfo': CLIENT_INFO,
          'io.modelcontextprotocol/clientCapabilities': {},
        },
      },
    });
  }

  async echo(): Promise<void> {
    const id = this.nextId++;
    const reply = await httpRequest(
      this.agent,
      this.target.url,
      'POST',
      { ...this.headers, 'mcp-name': 'echo' },
      this.body(id, 'echo', { text: ECHO_TEXT }),
    );
    const text = toolText(messagesOf(reply), id, this.target.url.href);
    if (text !== (this.target.echoReply ?? ECHO_TEXT)) throw new Error(`echo answered ${text}`);
  }

  async big(bytes: number): Promise<number> {
    const id = this.nextId++;
    const reply = await httpRequest(
      this.agent,
      this.target.url,
      'POST',
      { ...this.headers, 'mcp-name': 'big' },
      this.body(id, 'big', { bytes }),
    );
    return toolText(messagesOf(reply), id, this.target.url.href).length;
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** JSON lines on a child's stdin and stdout, nothing else: the floor. */
export class RawStdioClient implements EchoClient {
  private nextId = 1;
  private readonly waiting = new Map<number, (message: Record<string, unknown>) => void>();
  private pending: Buffer[] = [];

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (chunk: Buffer) => this.receive(chunk));
  }

  /** Spawns the child and initializes it; `onReady` gets the time from spawn to the initialize answer. */
  static async start(
    command: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
  ): Promise<{ client: RawStdioClient; startMs: number }> {
    const started = performance.now();
    const child = spawn(command, args, { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const client = new RawStdioClient(child);
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`child exited with ${code} before it answered`))),
    );
    await Promise.race([
      client.request('initialize', { protocolVersion: LEGACY_VERSION, capabilities: {}, clientInfo: CLIENT_INFO }),
      exited,
    ]);
    const startMs = performance.now() - started;
    child.stdin?.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
    return { client, startMs };
  }

  private receive(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1; nl = chunk.indexOf(0x0a, start)) {
      this.pending.push(chunk.subarray(start, nl));
      start = nl + 1;
      const line = Buffer.concat(this.pending).toString('utf8');
      this.pending = [];
      if (line.trim() === '') continue;
      const message = JSON.parse(line) as Record<string, unknown>;
      if (typeof message.id === 'number') {
        this.waiting.get(message.id)?.(message);
        this.waiting.delete(message.id);
      }
    }
    if (start < chunk.length) this.pending.push(chunk.subarray(start));
  }

  request(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`no answer to ${method} on stdio within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, (message) => {
        clearTimeout(timer);
        resolve(message);
      });
      this.child.stdin?.write(JSON.stringify({ jsonrpc: '2.0', id, method, params }) + '\n');
    });
  }

  async echo(): Promise<void> {
    const message = await this.request('tools/call', { name: 'echo', arguments: { text: ECHO_TEXT } });
    const text = toolText([message], message.id as number, 'stdio');
    if (text !== ECHO_TEXT) throw new Error(`echo answered ${text}`);
  }

  async big(bytes: number): Promise<number> {
    const message = await this.request('tools/call', { name: 'big', arguments: { bytes } });
    return toolText([message], message.id as number, 'stdio').length;
  }

  async close(): Promise<void> {
    this.child.stdin?.end();
    if (this.child.exitCode === null) {
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 3_000);
      await new Promise((resolve) => this.child.once('exit', resolve));
      clearTimeout(timer);
    }
  }
}

function sdkText(result: unknown): string {
  const content = (result as { content?: { type: string; text?: string }[] }).content;
  const text = content?.[0]?.text;
  if (typeof text !== 'string') throw new Error(`no text in ${JSON.stringify(result).slice(0, 200)}`);
  return text;
}

/** The official SDK client, over stdio or Streamable HTTP. */
export class SdkClient implements EchoClient {
  private constructor(private readonly client: Client) {}

  static async stdio(command: string, args: readonly string[], env: Record<string, string>): Promise<SdkClient> {
    const client = new Client(CLIENT_INFO, { capabilities: {} });
    await client.connect(new StdioClientTransport({ command, args: [...args], env, stderr: 'ignore' }));
    return new SdkClient(client);
  }

  static async http(target: HttpTarget, mode: 'legacy' | 'auto'): Promise<SdkClient> {
    const client = new Client(CLIENT_INFO, { capabilities: {}, versionNegotiation: { mode } });
    const headers: Record<string, string> = target.bearer === undefined ? {} : { Authorization: `Bearer ${target.bearer}` };
    await client.connect(new StreamableHTTPClientTransport(target.url, { requestInit: { headers } }));
    return new SdkClient(client);
  }

  async echo(): Promise<void> {
    const text = sdkText(await this.client.callTool({ name: 'echo', arguments: { text: ECHO_TEXT } }));
    if (text !== ECHO_TEXT) throw new Error(`echo answered ${text}`);
  }

  async big(bytes: number): Promise<number> {
    return sdkText(await this.client.callTool({ name: 'big', arguments: { bytes } })).length;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
