import { Duplex } from 'node:stream';

/**
 * A client connection handed to a node:http server (`server.emit('connection', …)`)
 * that records each write the HTTP layer makes: one write is one segment on a
 * socket, so a test can see what leaves together.
 */
export class RecordingConnection extends Duplex {
  readonly writes: string[] = [];

  /** Sends raw request bytes, as a client would. */
  send(request: string): void {
    this.push(request);
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.writes.push(chunk.toString('utf8'));
    callback();
  }

  override _writev(chunks: { chunk: Buffer }[], callback: () => void): void {
    this.writes.push(chunks.map(({ chunk }) => chunk.toString('utf8')).join(''));
    callback();
  }
}
