/**
 * The broker as the through-broker conformance runs see it: the production
 * broker of signed-in-broker.ts, with the conformance user at the Forgejo
 * stand-in and the conformance fixture as the child (`BROKER_CHILD_COMMAND`).
 */
import { fileURLToPath } from 'node:url';

import type { LogLevel } from '../../src/log/logger.js';
import type { Credentials } from './conformance-oauth.js';
import { startSignedInTestBroker, type SignedInTestBroker } from './signed-in-broker.js';

/** The fixture child, compiled: dist/test/conformance/fixture.js. */
export const FIXTURE_CHILD = fileURLToPath(new URL('../conformance/fixture.js', import.meta.url));

export const CONFORMANCE_USER: Credentials & { readonly id: number } = {
  id: 4242,
  login: 'conformance',
  password: 'conformance-password',
};

export interface ConformanceBrokerOptions {
  /** Child argv; default `node dist/test/conformance/fixture.js`. */
  readonly childCommand?: string;
  readonly logLevel?: LogLevel;
}

export function startConformanceBroker(options: ConformanceBrokerOptions = {}): Promise<SignedInTestBroker> {
  return startSignedInTestBroker({
    name: 'conformance',
    users: [
      {
        id: CONFORMANCE_USER.id,
        login: CONFORMANCE_USER.login,
        password: CONFORMANCE_USER.password,
        fullName: 'Conformance Suite',
        email: 'conformance@example.test',
      },
    ],
    childCommand: options.childCommand ?? `'${process.execPath}' '${FIXTURE_CHILD}'`,
    // Every scenario (33 legacy ones) opens a session as the one conformance user, and one not
    // ended by a DELETE stays until the idle timeout: more than the default 16 per user in a run.
    env: { BROKER_LOG_LEVEL: options.logLevel ?? 'warn', BROKER_MAX_SESSIONS_PER_USER: '0' },
  });
}
