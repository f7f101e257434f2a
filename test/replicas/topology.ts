/**
 * The replica topology of issue 13, as an operator runs it: one PostgreSQL
 * database, the Forgejo stand-in (here, in the test process) with the broker
 * registered as its application, three `forgejo-mcp-broker serve` processes
 * on loopback ports of their own, all configured by environment variables
 * alone, and a plain round-robin balancer in front (`balancers.ts`), whose
 * URL is every replica's BROKER_PUBLIC_URL. Replicas can be killed, stopped
 * and started again on the same port; the balancer notices by itself.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { standinChildCommand, STANDIN_CHILD_SCRIPT } from '../../src/demo.js';
import { OAUTH_PATHS } from '../../src/oauth/context.js';
import { type ForgejoStandin, startForgejoStandin } from '../../src/standin/forgejo.js';
import type { StandinUser } from '../../src/standin/forgejo-user.js';
import { standinUpstreamCommandLine } from '../support/brokers.js';
import { childProcesses, eventually, isRunning, portForProcess } from '../support/host.js';
import { Balancer, balancerInstalled, type BalancerKind, INSTALL } from './balancers.js';

export type UpstreamMode = 'stdio' | 'shared';

export interface TopologyOptions {
  readonly balancer: BalancerKind;
  /** `stdio`: a forgejo-mcp child per session on the replica that holds it; `shared`: each replica runs a multi-tenant upstream. */
  readonly upstream: UpstreamMode;
  /** The PostgreSQL server; a database of its own is created in it for this topology and dropped at the end. */
  readonly databaseUrl: string;
  readonly users: readonly StandinUser[];
  readonly replicas?: number;
}

/** The broker as installed: the compiled CLI next to this file's compiled tree. */
const CLI = fileURLToPath(new URL('../../src/cli.js', import.meta.url));
const APPLICATION_SCOPES = 'read:user write:issue write:repository';
/** How long a replica may take to answer /readyz after it was started. */
const START_LIMIT_MS = 30_000;

/** Four people who can sign in at the stand-in, one per concurrent client of the scenarios. */
export const TOPOLOGY_USERS: readonly StandinUser[] = ['ada', 'brian', 'chidi', 'dana'].map((login, index) => ({
  id: 101 + index,
  login,
  password: `${login}-password`,
  fullName: `${login[0]?.toUpperCase() ?? ''}${login.slice(1)} Replica`,
  email: `${login}@example.test`,
}));

/** Why the topology cannot run here (no PostgreSQL server named, the balancer not installed), or false. */
export function topologyUnavailable(balancer: BalancerKind, databaseUrl: string): string | false {
  if (databaseUrl === '') return 'BROKER_TEST_DATABASE_URL is not set: start a throwaway server with `eval "$(.ci/postgres.sh start)"`';
  if (!balancerInstalled(balancer)) return `${balancer} is not installed: ${INSTALL[balancer]}`;
  return false;
}

/** One `forgejo-mcp-broker serve` process; `start` runs it again on the same port with the same settings. */
export class Replica {
  #proc: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #log: WriteStream | undefined;
  /** How often it was started. */
  starts = 0;

  constructor(
    /** 1-based, as the balancer names it. */
    readonly number: number,
    readonly port: number,
    readonly logFile: string,
    readonly env: Readonly<Record<string, string>>,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.running ? this.#proc?.pid : undefined;
  }

  get running(): boolean {
    return this.#proc !== undefined && this.#proc.exitCode === null && this.#proc.signalCode === null;
  }

  /** Starts the process and waits until its own /readyz answers 200 (not through the balancer). */
  async start(): Promise<void> {
    if (this.running) throw new Error(`replica ${this.number} is already running`);
    this.starts++;
    this.#log ??= createWriteStream(this.logFile, { flags: 'a' });
    this.#log.write(`--- start ${this.starts}\n`);
    const proc = spawn(process.execPath, [CLI, 'serve'], { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] });
    // The broker logs JSON lines on stdout; stderr has what Node itself says (a crash).
    proc.stdout?.pipe(this.#log, { end: false });
    proc.stderr?.pipe(this.#log, { end: false });
    this.#proc = proc;
    this.#exited = once(proc, 'exit').then(() => undefined);
    await eventually(
      async () => {
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`replica ${this.number} exited:\n${await this.logTail()}`);
        return readyz(this.url);
      },
      `replica ${this.number} to answer /readyz`,
      START_LIMIT_MS,
    );
  }

  /** Sends a signal and waits for the process to exit; SIGKILL leaves its children to fend for themselves, as it would in production. */
  async signal(signal: NodeJS.Signals): Promise<void> {
    const proc = this.#proc;
    if (proc === undefined || !this.running) return;
    const exited = this.#exited;
    proc.kill(signal);
    await exited;
  }

  /** The end of its log, for failure messages. */
  async logTail(lines = 40): Promise<string> {
    const text = await readFile(this.logFile, 'utf8').catch(() => '');
    return text.split('\n').slice(-lines).join('\n');
  }

  async close(): Promise<void> {
    if (this.running) {
      const watchdog = setTimeout(() => this.#proc?.kill('SIGKILL'), 15_000);
      await this.signal('SIGTERM');
      clearTimeout(watchdog);
    }
    await new Promise<void>((resolve) => (this.#log === undefined ? resolve() : this.#log.end(() => resolve())));
  }
}

async function readyz(url: string): Promise<boolean> {
  try {
    const response = await fetch(`${url}/readyz`);
    await response.body?.cancel();
    return response.status === 200;
  } catch {
    return false;
  }
}

export class Topology {
  /** Processes a killed replica left behind (a shared upstream has no pipe to notice its parent is gone); stopped at close. */
  readonly #orphans = new Set<number>();

  private constructor(
    readonly options: TopologyOptions,
    readonly dir: string,
    readonly forgejo: ForgejoStandin,
    readonly replicas: readonly Replica[],
    readonly balancer: Balancer,
    readonly database: TopologyDatabase,
  ) {}

  /** Starts PostgreSQL's database, the stand-in, the replicas (one after another, as the first one migrates the schema) and the balancer. */
  static async start(options: TopologyOptions): Promise<Topology> {
    const dir = await mkdtemp(join(tmpdir(), `topology-${options.balancer}-${options.upstream}-`));
    const cleanups: (() => Promise<void>)[] = [() => rm(dir, { recursive: true, force: true })];
    const undo = async (): Promise<void> => {
      for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
    };
    try {
      const database = await TopologyDatabase.create(options.databaseUrl);
      cleanups.push(() => database.drop());
      const balancerPort = await portForProcess();
      const publicUrl = `http://127.0.0.1:${balancerPort}`;
      const application = { clientId: 'forgejo-mcp-broker-replicas', clientSecret: randomBytes(24).toString('hex') };
      const forgejo = await startForgejoStandin({
        users: options.users,
        applications: [{ ...application, redirectUris: [`${publicUrl}${OAUTH_PATHS.callback}`] }],
      });
      cleanups.push(() => forgejo.close());
      const encryptionKey = randomBytes(32).toString('hex');
      const replicas: Replica[] = [];
      for (let number = 1; number <= (options.replicas ?? 3); number++) {
        const port = await portForProcess();
        const replica = new Replica(number, port, join(dir, `replica-${number}.log`), {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          BROKER_LISTEN: `127.0.0.1:${port}`,
          BROKER_PUBLIC_URL: publicUrl,
          BROKER_REPLICA_URL: `http://127.0.0.1:${port}`,
          BROKER_DATABASE_URL: database.url,
          BROKER_ENCRYPTION_KEY: encryptionKey,
          BROKER_DATA_DIR: join(dir, `data-${number}`),
          BROKER_CHILD_COMMAND: standinChildCommand({ testTools: true }),
          ...(options.upstream === 'shared' ? { BROKER_UPSTREAM_COMMAND: standinUpstreamCommandLine({ testTools: true }) } : {}),
          FORGEJO_URL: forgejo.url,
          FORGEJO_CLIENT_ID: application.clientId,
          FORGEJO_CLIENT_SECRET: application.clientSecret,
          FORGEJO_SCOPES: APPLICATION_SCOPES,
          // Every client of the test comes from 127.0.0.1, through the balancer.
          BROKER_RATE_LIMIT: '100000',
          BROKER_TRUSTED_PROXIES: '127.0.0.1/32',
          BROKER_SHUTDOWN_GRACE: '5s',
          BROKER_LOG_LEVEL: process.env.TOPOLOGY_LOG_LEVEL ?? 'warn',
        });
        cleanups.push(() => replica.close());
        replicas.push(replica);
        await replica.start();
      }
      const balancer = await Balancer.start({
        kind: options.balancer,
        dir,
        port: balancerPort,
        replicaPorts: replicas.map((replica) => replica.port),
      });
      cleanups.push(() => balancer.stop());
      const topology = new Topology(options, dir, forgejo, replicas, balancer, database);
      for (const replica of replicas) await topology.waitRouted(replica);
      return topology;
    } catch (error) {
      await undo();
      throw error;
    }
  }

  get url(): string {
    return this.balancer.url;
  }

  get mcpUrl(): URL {
    return new URL('/mcp', this.url);
  }

  replica(number: number): Replica {
    const replica = this.replicas[number - 1];
    if (replica === undefined) throw new Error(`no replica ${number}`);
    return replica;
  }

  /** SIGKILL: the process is gone at once, whatever it held. */
  async kill(replica: Replica): Promise<void> {
    const pid = replica.pid;
    const children = pid === undefined ? [] : childProcesses(pid, STANDIN_CHILD_SCRIPT);
    await replica.signal('SIGKILL');
    for (const child of children) this.#orphans.add(child);
  }

  /** SIGTERM: the graceful stop an orchestrator asks for. */
  async stop(replica: Replica): Promise<void> {
    await replica.signal('SIGTERM');
  }

  /** Starts a replica again on its port, and waits until the balancer sends it requests again; how long each step took, for the report. */
  async restart(replica: Replica): Promise<{ readyMs: number; routedMs: number }> {
    const started = Date.now();
    await replica.start();
    const ready = Date.now();
    await this.waitRouted(replica);
    return { readyMs: ready - started, routedMs: Date.now() - ready };
  }

  /** Waits until a request through the balancer is answered by this replica (its health check passed, or its failure expired). */
  async waitRouted(replica: Replica): Promise<void> {
    await eventually(
      async () => {
        const response = await fetch(`${this.url}/readyz`).catch(() => undefined);
        await response?.body?.cancel();
        return response !== undefined && this.balancer.replicaOf(response.headers) === replica.number;
      },
      `the ${this.options.balancer} balancer to send requests to replica ${replica.number}`,
      START_LIMIT_MS,
    );
  }

  /** Requests the balancer logged since `from` (an index into its log), per replica. */
  async servedBy(from = 0, filter: (path: string) => boolean = () => true): Promise<Map<number | undefined, number>> {
    const counts = new Map<number | undefined, number>();
    for (const request of (await this.balancer.requests()).slice(from)) {
      if (filter(request.path)) counts.set(request.replica, (counts.get(request.replica) ?? 0) + 1);
    }
    return counts;
  }

  /** Lines at level warn and above that the replicas logged, for the report. */
  async replicaLogs(): Promise<string> {
    const parts: string[] = [];
    for (const replica of this.replicas) parts.push(`replica ${replica.number}:\n${await replica.logTail(20)}`);
    return parts.join('\n');
  }

  async close(): Promise<void> {
    const errors: unknown[] = [];
    const attempt = async (step: () => Promise<void>): Promise<void> => {
      await step().catch((error: unknown) => errors.push(error));
    };
    await attempt(() => this.balancer.stop());
    for (const replica of this.replicas) await attempt(() => replica.close());
    for (const pid of this.#orphans) {
      if (!isRunning(pid)) continue;
      try {
        process.kill(-pid, 'SIGTERM');
      } catch {
        // already gone
      }
    }
    await attempt(() => this.forgejo.close());
    await attempt(() => this.database.drop());
    if (process.env.TOPOLOGY_KEEP === undefined) await attempt(() => rm(this.dir, { recursive: true, force: true }));
    if (errors.length > 0) throw new AggregateError(errors, 'the topology did not stop cleanly');
  }
}

/** A database of its own in the PostgreSQL server, created empty and dropped at the end (the broker migrates it). */
class TopologyDatabase {
  #dropped = false;

  private constructor(
    readonly serverUrl: string,
    readonly name: string,
  ) {}

  static async create(serverUrl: string): Promise<TopologyDatabase> {
    const name = `broker_topology_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${name}`);
    } finally {
      await admin.end();
    }
    return new TopologyDatabase(serverUrl, name);
  }

  get url(): string {
    const url = new URL(this.serverUrl);
    url.pathname = `/${this.name}`;
    return url.href;
  }

  async drop(): Promise<void> {
    if (this.#dropped) return;
    this.#dropped = true;
    const admin = new pg.Client({ connectionString: this.serverUrl });
    await admin.connect();
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${this.name} WITH (FORCE)`);
    } finally {
      await admin.end();
    }
  }
}
