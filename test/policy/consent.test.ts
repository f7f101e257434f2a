/** The consent page says what the client will be able to do: the Forgejo scopes in words, and the tool policy for this user. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { scopesInWords } from '../../src/oauth/scope-words.js';
import { consentPage, OAuthHarness } from '../support/brokers.js';
import { pkce, TestBrowser } from '../support/oauth.js';

test('scopes in words: none is full access; read and write per category', () => {
  assert.deepEqual(scopesInWords(''), ['Full access to your account: everything you can do on the forge.']);
  assert.deepEqual(scopesInWords('read:user write:issue'), [
    'Read your profile and account settings.',
    'Read and change issues, pull request conversations and their comments.',
  ]);
});

for (const [scopes, expected] of [
  ['', /Full access to your account/],
  ['read:repository', /Read repositories: code/],
] as const) {
  test(`the consent page names the scopes (${scopes === '' ? 'none' : scopes}) and the tool policy`, async (t) => {
    const harness = await OAuthHarness.start({
      forgejoScopes: scopes,
      toolPolicyFor: () =>
        Promise.resolve({ lines: ['Only tools that read (the read-only preset): nothing can be changed on the forge.'], mayDiffer: true }),
    });
    t.after(() => harness.close());
    const client = await harness.register();
    const { challenge } = await pkce();
    const html = await consentPage(harness, new TestBrowser(), client.clientId, challenge);
    assert.match(html, /What it will be able to do/);
    assert.match(html, expected);
    assert.match(html, /Tools it may use/);
    assert.match(html, /Only tools that read \(the read-only preset\)/);
    assert.match(html, /Rules for particular users or teams may change this/);
  });
}

test('without a tool policy the consent page says every tool', async (t) => {
  const harness = await OAuthHarness.start();
  t.after(() => harness.close());
  const client = await harness.register();
  const { challenge } = await pkce();
  const html = await consentPage(harness, new TestBrowser(), client.clientId, challenge);
  assert.match(html, /Every tool the forge’s MCP server offers/);
  assert.doesNotMatch(html, /Rules for particular users/);
});
