import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isBrokerError } from '../../src/errors/errors.js';
import { silentLogger } from '../../src/log/logger.js';
import { open, seal } from '../../src/store/cipher.js';
import { ENCRYPTION_KEY_FILE, loadEncryptionKey, parseEncryptionKey } from '../../src/store/encryption-key.js';
import { openCodeVerifier, openForgejoTokens, sealCodeVerifier, sealForgejoTokens } from '../../src/store/sealed.js';
import { freshDataDirs } from '../support/host.js';

const freshDir = freshDataDirs('broker-sealing-test-');
const log = silentLogger();

describe('sealing', () => {
  it('opens only under the same key and context', () => {
    const key = randomBytes(32);
    const sealed = seal(key, 'secret', 'ctx');
    assert.equal(open(key, sealed, 'ctx'), 'secret');
    assert.throws(
      () => open(key, sealed, 'other'),
      (error) => isBrokerError(error, 'internal'),
    );
    assert.throws(
      () => open(randomBytes(32), sealed, 'ctx'),
      (error) => isBrokerError(error, 'internal'),
    );
    assert.notEqual(seal(key, 'secret', 'ctx'), sealed, 'fresh nonce each time');
  });

  it('binds Forgejo tokens to their user and verifiers to their state', () => {
    const key = randomBytes(32);
    const tokens = { accessToken: 'a', refreshToken: 'r', expiresAt: 1_800_000_000_000 };
    const sealed = sealForgejoTokens(key, '42', tokens);
    assert.deepEqual(openForgejoTokens(key, '42', sealed), tokens);
    assert.throws(
      () => openForgejoTokens(key, '43', sealed),
      (error) => isBrokerError(error, 'internal'),
    );
    const verifier = sealCodeVerifier(key, 'state-1', 'v');
    assert.equal(openCodeVerifier(key, 'state-1', verifier), 'v');
    assert.throws(
      () => openCodeVerifier(key, 'state-2', verifier),
      (error) => isBrokerError(error, 'internal'),
    );
  });
});

describe('encryption key', () => {
  it('parses 32 bytes as hex or base64 and nothing else', () => {
    const raw = randomBytes(32);
    assert.deepEqual(parseEncryptionKey(raw.toString('hex')), raw);
    assert.deepEqual(parseEncryptionKey(raw.toString('base64')), raw);
    assert.deepEqual(parseEncryptionKey(raw.toString('base64url')), raw);
    assert.equal(parseEncryptionKey('short'), undefined);
    assert.equal(parseEncryptionKey(randomBytes(16).toString('hex')), undefined);
  });

  it('uses the configured key, with no key file', async () => {
    const raw = randomBytes(32);
    const dir = freshDir();
    assert.deepEqual(await loadEncryptionKey(dir, raw, log), raw);
    assert.equal(existsSync(join(dir, ENCRYPTION_KEY_FILE)), false);
  });

  it('generates a key file with mode 0600 on first start and reuses it', async () => {
    const dir = freshDir();
    const first = await loadEncryptionKey(dir, undefined, log);
    const info = await stat(join(dir, ENCRYPTION_KEY_FILE));
    assert.equal(info.mode & 0o777, 0o600);
    assert.deepEqual(await loadEncryptionKey(dir, undefined, log), first);
  });

  it('refuses a key file that holds no key', async () => {
    const dir = freshDir();
    await loadEncryptionKey(dir, undefined, log);
    await writeFile(join(dir, ENCRYPTION_KEY_FILE), 'garbage\n');
    await assert.rejects(loadEncryptionKey(dir, undefined, log), /does not hold/);
  });
});
