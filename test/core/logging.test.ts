import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.js';

test('logs are JSON lines, and secrets in well-known places are redacted wherever a caller puts them', () => {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      out += chunk.toString();
      done();
    },
  });
  const log = createLogger('info', sink);
  log.info({ event: 'x', headers: { authorization: 'Bearer secret-1', cookie: 'fmb-signin=secret-2' } });
  log.info({ event: 'y', token: 'secret-3', credential: { accessToken: 'secret-4', refresh_token: 'secret-5' } });
  log.info({ event: 'z', env: { FORGEJO_ACCESS_TOKEN: 'secret-6', PATH: '/usr/bin' } });
  const lines = out
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
  assert.equal(lines.length, 3);
  assert.doesNotMatch(out, /secret-\d/);
  assert.match(out, /\[REDACTED\]/);
  assert.equal(lines[0]?.level, 'info');
  assert.equal((lines[2]?.env as Record<string, string>).PATH, '/usr/bin');
});
