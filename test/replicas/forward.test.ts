/**
 * Forwarding between replicas, byte by byte: what the replica that forwards
 * writes to its client, seen write by write. The owner is a real HTTP server
 * on loopback; the forwarding side's client connection records each write.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { ReplicaForwarder } from '../../src/replicas/forward.js';
import { eventually } from '../support/host.js';
import { RecordingConnection } from '../support/recording-connection.js';

const PRIMING = 'id: stream-1#ab.1\nretry: 500\ndata: \n\n';

/** The owner: a POST opens an SSE stream whose head and priming event leave in one write; a GET stream sends its head alone. */
function ownerServer(): Server {
  return createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (req.method === 'POST') res.write(PRIMING);
    else res.flushHeaders();
  });
}

describe('a forwarded SSE stream', () => {
  let owner: Server;
  let ownerUrl: URL;
  const forwarder = new ReplicaForwarder('aaaaaaaaaaaa', Buffer.alloc(32, 7));

  before(async () => {
    owner = ownerServer();
    owner.listen(0, '127.0.0.1');
    await once(owner, 'listening');
    ownerUrl = new URL(`http://127.0.0.1:${(owner.address() as AddressInfo).port}/`);
  });

  after(async () => {
    forwarder.close();
    owner.closeAllConnections();
    owner.close();
    await once(owner, 'close');
  });

  /** Sends `request` through a forwarding server whose one client connection records its writes. */
  function forwardThrough(request: string): { connection: RecordingConnection; front: Server } {
    const front = createServer((req: IncomingMessage, res: ServerResponse) => void forwarder.forward(req, res, ownerUrl, undefined));
    const connection = new RecordingConnection();
    front.emit('connection', connection);
    connection.send(request);
    return { connection, front };
  }

  it('hands the client its head and first event in one write, so a reset cannot deliver the one and lose the other', async () => {
    const { connection } = forwardThrough('POST /mcp HTTP/1.1\r\nhost: broker\r\ncontent-length: 2\r\n\r\n{}');
    await eventually(() => connection.writes.join('').includes(PRIMING), 'the priming event reached the client');
    const [first] = connection.writes;
    assert.match(first ?? '', /^HTTP\/1\.1 200 /);
    assert.ok(
      first?.includes(PRIMING),
      `the first write carries the priming event as well as the head: ${JSON.stringify(connection.writes)}`,
    );
    connection.destroy();
  });

  it('sends the head of a stream with nothing to send yet (a GET stream) on its own', async () => {
    const { connection } = forwardThrough('GET /mcp HTTP/1.1\r\nhost: broker\r\n\r\n');
    await eventually(() => connection.writes.length > 0, 'the head reached the client');
    assert.match(connection.writes[0] ?? '', /^HTTP\/1\.1 200 [^]*text\/event-stream/);
    connection.destroy();
  });
});
