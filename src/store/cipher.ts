import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

import { BrokerError } from '../errors/errors.js';

/** AES-256-GCM with a random 96-bit nonce; the sealed form is versioned. */
const VERSION = 1;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Seals text under a 32-byte key. `context` is authenticated but not stored:
 * it binds the ciphertext to where it belongs (a user id, a row), so a sealed
 * value copied to another row does not open.
 */
export function seal(key: Buffer, plaintext: string, context: string): string {
  assertKey(key);
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), nonce, cipher.getAuthTag(), body]).toString('base64url');
}

/** Opens what `seal` produced with the same key and context; throws if anything differs. */
export function open(key: Buffer, sealed: string, context: string): string {
  assertKey(key);
  const raw = Buffer.from(sealed, 'base64url');
  if (raw.length < 1 + NONCE_BYTES + TAG_BYTES || raw[0] !== VERSION) {
    throw new BrokerError('internal', 'sealed value is malformed');
  }
  const nonce = raw.subarray(1, 1 + NONCE_BYTES);
  const tag = raw.subarray(1 + NONCE_BYTES, 1 + NONCE_BYTES + TAG_BYTES);
  const body = raw.subarray(1 + NONCE_BYTES + TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
  } catch (cause) {
    throw new BrokerError('internal', 'sealed value does not open under this key', { cause });
  }
}

function assertKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new BrokerError('internal', `encryption key must be ${KEY_BYTES} bytes`);
}
