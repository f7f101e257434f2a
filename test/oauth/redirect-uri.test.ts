import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { redirectUriMatches } from '../../src/oauth/redirect-uri.js';

describe('redirect URI matching', () => {
  it('loopback: localhost, 127.0.0.1 and [::1] are one host, on any port; path and query must match', () => {
    for (const [registered, presented] of [
      ['http://localhost/oauth_callback', 'http://127.0.0.1:53682/oauth_callback'],
      ['http://127.0.0.1:33418/', 'http://127.0.0.1:40000/'],
      ['http://127.0.0.1/callback', 'http://[::1]:8080/callback'],
      ['http://[::1]/cb?x=1', 'http://LOCALHOST:1/cb?x=1'],
    ]) {
      assert.equal(redirectUriMatches(registered as string, presented as string), true, `${registered} ~ ${presented}`);
    }
  });

  it('never matches a host that only looks local, other paths, credentials, fragments or https', () => {
    for (const [registered, presented] of [
      ['http://localhost/cb', 'http://localhost.evil.example/cb'],
      ['http://localhost/cb', 'http://127.0.0.2/cb'],
      ['http://localhost/cb', 'http://localhost:8080/cb/'],
      ['http://localhost/cb', 'http://localhost:8080/cb?extra=1'],
      ['http://localhost/cb', 'http://user:pw@localhost:8080/cb'],
      ['http://localhost/cb', 'http://localhost:8080/cb#frag'],
      ['http://localhost/cb', 'https://localhost:8080/cb'],
      ['https://client.example/cb', 'https://client.example:8443/cb'],
      ['cursor://anysphere.cursor-mcp/oauth/callback', 'cursor://anysphere.cursor-mcp/oauth/callback2'],
    ]) {
      assert.equal(redirectUriMatches(registered as string, presented as string), false, `${registered} !~ ${presented}`);
    }
    assert.equal(redirectUriMatches('cursor://anysphere.cursor-mcp/oauth/callback', 'cursor://anysphere.cursor-mcp/oauth/callback'), true);
  });
});
