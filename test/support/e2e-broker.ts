/**
 * The broker as an operator runs it, for the end-to-end sign-in tests: the
 * production broker of signed-in-broker.ts with the stand-in forgejo-mcp as
 * the child, the encryption key file generated in its data directory, and
 * the Forgejo stand-in behind the recording `ForgejoFront`. `restart()`
 * stops the broker and starts a new one on the same port and data
 * directory, as a process restart would; `wire` records what each broker
 * process answered.
 */
import type { RunningBroker } from '../../src/app.js';
import { DEMO_USERS, standinChildCommand } from '../../src/demo.js';
import type { StandinUser } from '../../src/standin/forgejo.js';
import { ForgejoFront } from './e2e-forgejo.js';
import { startSignedInTestBroker, type SignedInTestBroker } from './signed-in-broker.js';

/** The demo's users (`demo`, `alice`) and one more, so each test can sign in someone of its own. */
export const E2E_USERS: readonly StandinUser[] = [
  ...DEMO_USERS,
  { id: 3, login: 'carol', password: 'carol-pw', fullName: 'Carol Example', email: 'carol@example.test' },
  { id: 4, login: 'dave', password: 'dave-pw', fullName: 'Dave Example', email: 'dave@example.test' },
  { id: 5, login: 'erin', password: 'erin-pw', fullName: 'Erin Example', email: 'erin@example.test' },
];

export function e2eUser(login: string): StandinUser {
  const user = E2E_USERS.find((candidate) => candidate.login === login);
  if (user === undefined) throw new Error(`no e2e user ${login}`);
  return user;
}

/** One request the broker answered. */
export interface WireEntry {
  readonly method: string;
  readonly path: string;
  readonly status: number;
  /** Which broker process (1, then 2 after a restart, …) answered. */
  readonly generation: number;
}

/** Records every request each broker process answers, numbering the processes as they start. */
class WireRecorder {
  readonly entries: WireEntry[] = [];
  generation = 0;

  record(broker: RunningBroker): void {
    const generation = ++this.generation;
    broker.server.server.on('request', (req, res) => {
      const method = req.method ?? 'GET';
      const path = new URL(req.url ?? '/', broker.url).pathname;
      res.once('close', () => this.entries.push({ method, path, status: res.statusCode, generation }));
    });
  }
}

export class E2EBroker {
  readonly #harness: SignedInTestBroker<ForgejoFront>;
  readonly #recorder: WireRecorder;

  private constructor(harness: SignedInTestBroker<ForgejoFront>, recorder: WireRecorder) {
    this.#harness = harness;
    this.#recorder = recorder;
  }

  static async start(env: Readonly<Record<string, string>> = {}): Promise<E2EBroker> {
    const recorder = new WireRecorder();
    const harness = await startSignedInTestBroker({
      name: 'e2e',
      users: E2E_USERS,
      childCommand: standinChildCommand({ testTools: true }),
      forgejoFront: (forgejo) => ForgejoFront.start(forgejo),
      onBrokerStarted: (broker) => recorder.record(broker),
      env: {
        FORGEJO_SCOPES: 'read:user read:repository write:issue',
        BROKER_CIMD_ALLOW_PRIVATE: 'true',
        BROKER_LOG_LEVEL: process.env.E2E_LOG_LEVEL ?? 'error',
        // Every browser and client here is 127.0.0.1; the default limit is per address.
        BROKER_RATE_LIMIT: '1000',
        ...env,
      },
    });
    return new E2EBroker(harness, recorder);
  }

  /** Every request the broker answered, across restarts. */
  get wire(): readonly WireEntry[] {
    return this.#recorder.entries;
  }

  /** How many broker processes have started: 1, then 2 after a restart, … */
  get generation(): number {
    return this.#recorder.generation;
  }

  get url(): string {
    return this.#harness.url;
  }

  get mcpUrl(): URL {
    return new URL(`${this.url}/mcp`);
  }

  get front(): ForgejoFront {
    return this.#harness.front;
  }

  get dataDir(): string {
    return this.#harness.dataDir;
  }

  get broker(): RunningBroker {
    return this.#harness.broker;
  }

  /** Requests the broker answered for METHOD path (optionally only those with this status). */
  count(method: string, path: string, status?: number): number {
    return this.wire.filter((entry) => entry.method === method && entry.path === path && (status === undefined || entry.status === status))
      .length;
  }

  /** Stops the broker (graceful, children stopped, store closed) and starts a new one on the same port and data directory. */
  restart(): Promise<void> {
    return this.#harness.restart();
  }

  close(): Promise<void> {
    return this.#harness.close();
  }
}
