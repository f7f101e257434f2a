import { hkdfSync } from 'node:crypto';

/** HKDF's info: names the key's one use, so it is unrelated to any other key derived from the same secret. */
const FORWARDING_INFO = 'forgejo-mcp-broker replica forwarding';

/**
 * The key replicas mark forwarded requests with (HMAC-SHA-256), derived
 * with HKDF-SHA-256 from BROKER_ENCRYPTION_KEY: every replica on one
 * PostgreSQL database must share that key already (they seal each other's
 * Forgejo tokens), so there is no second secret to distribute, and the
 * encryption key itself never signs anything.
 */
export function replicaForwardingKey(encryptionKey: Buffer): Buffer {
  return Buffer.from(hkdfSync('sha256', encryptionKey, Buffer.alloc(0), FORWARDING_INFO, 32));
}
