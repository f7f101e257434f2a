/** Reads a V8 .cpuprofile and says where the self time went: by function and by component. */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly children?: readonly number[];
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly hitCount?: number;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples?: readonly number[];
}

export interface ProfileLine {
  readonly name: string;
  /** Share of all samples, percent. */
  readonly selfPercent: number;
}

export interface ProfileSummary {
  readonly file: string;
  readonly samples: number;
  /** Self time by function. */
  readonly functions: ProfileLine[];
  /** Self time by component (module, package, native). */
  readonly components: ProfileLine[];
  /** Inclusive time (a sample counts once if any frame on its stack matches) of the broker's stages. */
  readonly stages: ProfileLine[];
}

/** The stages of a broker request, by the frames that run them; inclusive, so they overlap where they nest. */
const STAGES: readonly [string, (url: string, name: string) => boolean][] = [
  ['not idle (all work)', (url, name) => name !== '(idle)' && name !== '(program)' && name !== '(root)'],
  ['garbage collector', (_url, name) => name === '(garbage collector)'],
  ['BrokerServer.serve (up to its first await)', (url, name) => url.endsWith('/dist/src/http/server.js') && name === 'serve'],
  ['BrokerServer.authenticate (bearer check)', (url, name) => url.endsWith('/dist/src/http/server.js') && name === 'authenticate'],
  [
    'SDK Node adapter (@modelcontextprotocol/node, @hono/node-server)',
    (url) => url.includes('/@modelcontextprotocol/node/') || url.includes('/@hono/node-server/'),
  ],
  ['SDK web-standard transport (@modelcontextprotocol/server)', (url) => url.includes('/@modelcontextprotocol/server/')],
  [
    'SDK, all of it (Node adapter, transport or classifier, web streams, zod)',
    (url) =>
      url.includes('/@modelcontextprotocol/') ||
      url.includes('/@hono/node-server/') ||
      url.startsWith('node:internal/webstreams') ||
      url.includes('/zod/'),
  ],
  ['zod (message validation)', (url) => url.includes('/zod/')],
  ['Web streams (node:internal/webstreams)', (url) => url.startsWith('node:internal/webstreams')],
  ['LegacySession (src/legacy/session.ts)', (url) => url.endsWith('/dist/src/legacy/session.js')],
  [
    'ChildChannel (src/pool/channel.ts, client-state.ts)',
    (url) => url.endsWith('/dist/src/pool/channel.js') || url.endsWith('/dist/src/pool/client-state.js'),
  ],
  ['ModernFront + ResponseWriter (src/modern/)', (url) => url.includes('/dist/src/modern/')],
  ['child stdio (src/supervisor/)', (url) => url.includes('/dist/src/supervisor/')],
  ['UpstreamSession (src/upstream/): shared mode', (url) => url.includes('/dist/src/upstream/')],
  ['SDK client transport (@modelcontextprotocol/client): shared mode', (url) => url.includes('/@modelcontextprotocol/client/')],
  ['fetch (undici)', (url) => url.includes('internal/deps/undici')],
  ['pino (logging)', (url) => url.includes('/pino/') || url.includes('/sonic-boom/')],
  ['node http parser/writer (node:_http_*)', (url) => url.startsWith('node:_http_')],
];

/** Which part of the process a frame belongs to. */
function component(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(garbage collector)') return 'garbage collector';
    if (functionName === '(idle)') return 'idle';
    if (functionName === '(program)') return 'V8/native (program)';
    return `native: ${functionName || '(anonymous)'}`;
  }
  if (url.startsWith('node:internal/')) return `node: internal/${url.slice(14).split('/')[0] ?? url}`;
  if (url.startsWith('node:')) return `node: ${url.slice(5)}`;
  const modules = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (modules !== null) return `npm: ${modules[1]}`;
  const own = /dist\/src\/(.+)\.js$/.exec(url);
  if (own !== null) return `broker: src/${own[1]}.ts`;
  return url.replace(/^file:\/\//, '');
}

function shortUrl(url: string): string {
  const modules = /node_modules\/(.+)$/.exec(url);
  if (modules !== null) return modules[1] as string;
  const own = /dist\/(src\/.+)$/.exec(url);
  if (own !== null) return own[1] as string;
  return url.replace(/^file:\/\//, '').replace(/^node:/, 'node:');
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const counts = new Map<number, number>();
  if (profile.samples !== undefined) for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  let total = 0;
  const byFunction = new Map<string, number>();
  const byComponent = new Map<string, number>();
  for (const node of profile.nodes) {
    const hits = counts.get(node.id) ?? node.hitCount ?? 0;
    if (hits === 0) continue;
    total += hits;
    const { functionName, url, lineNumber } = node.callFrame;
    const name = url === '' ? functionName : `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + hits);
    const part = component(url, functionName);
    byComponent.set(part, (byComponent.get(part) ?? 0) + hits);
  }
  const lines = (map: Map<string, number>): ProfileLine[] =>
    [...map.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, hits]) => ({ name, selfPercent: (hits / Math.max(1, total)) * 100 }));
  // Inclusive stages: walk each sampled node's ancestors once.
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const stageHits = new Map<string, number>();
  for (const [id, hits] of counts.size > 0 ? counts : new Map(profile.nodes.map((node) => [node.id, node.hitCount ?? 0]))) {
    const matched = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const frame = byId.get(at)?.callFrame;
      if (frame === undefined) continue;
      for (const [stage, test] of STAGES) if (test(frame.url, frame.functionName)) matched.add(stage);
    }
    for (const stage of matched) stageHits.set(stage, (stageHits.get(stage) ?? 0) + hits);
  }
  const stages = STAGES.map(([stage]) => ({ name: stage, selfPercent: ((stageHits.get(stage) ?? 0) / Math.max(1, total)) * 100 }));
  return { file, samples: total, functions: lines(byFunction), components: lines(byComponent), stages };
}
